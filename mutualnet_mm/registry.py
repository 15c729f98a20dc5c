"""Registry of the mutual-learning components (batch rescalers, distillers).

Loops are registered in mmengine's root ``LOOPS`` so that mmdet and mmaction2 configs
(whatever their ``default_scope``) find them by name.
"""
from mmengine.registry import Registry

MUTUAL = Registry('mutual learning component', locations=['mutualnet_mm.engine'])
