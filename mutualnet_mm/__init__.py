"""MutualNet for OpenMMLab: one network, every (width, resolution) configuration.

``import mutualnet_mm`` registers every slimmable module and engine component.
"""
from . import models  # noqa: F401  (registers the modules)
from .ops import get_width, set_width, width_range_of

__version__ = '0.1.0'
__all__ = ['get_width', 'set_width', 'width_range_of', '__version__']
