"""MutualNet for OpenMMLab: one network, every (width, resolution) configuration.

``import mutualnet_mm`` registers every slimmable module and engine component.
"""
from . import datasets, engine, evaluation, models, reliability  # noqa: F401  (registers the components)
from .ops import get_width, set_width, width_range_of
from .reliability.checkpoint import install_safe_loading

install_safe_loading()  # every mmengine checkpoint load: weights only, scanned, checked

__version__ = '0.1.0'
__all__ = ['get_width', 'set_width', 'width_range_of', '__version__']
