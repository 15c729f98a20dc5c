"""MutualNet for OpenMMLab: one network, every (width, resolution) configuration.

``import mutualnet_mm`` registers every slimmable module and engine component.
"""
from . import datasets, engine, evaluation, models  # noqa: F401  (registers the components)
from .engine.checkpoint import install_safe_loading
from .ops import get_width, set_width, width_range_of

install_safe_loading()  # every mmengine checkpoint load: weights only, scanned, checked

__version__ = '0.1.0'
__all__ = ['get_width', 'set_width', 'width_range_of', '__version__']
