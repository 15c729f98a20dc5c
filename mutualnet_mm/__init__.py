"""MutualNet for OpenMMLab: one network, every (width, resolution) configuration.

``import mutualnet_mm`` registers every slimmable module and engine component.
"""
from . import datasets, engine, evaluation, models  # noqa: F401  (registers the components)
from .engine.checkpoint import (
    allow_mmengine_checkpoint_classes,
    load_local_checkpoints_safely,
    load_urls_weights_only,
)
from .ops import get_width, set_width, width_range_of

allow_mmengine_checkpoint_classes()  # mmengine resume/load_from with weights_only=True
load_urls_weights_only()
load_local_checkpoints_safely()

__version__ = '0.1.0'
__all__ = ['get_width', 'set_width', 'width_range_of', '__version__']
