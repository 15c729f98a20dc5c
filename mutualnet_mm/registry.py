"""Registry of the mutual-learning components (batch rescalers, distillers).

Loops are registered in mmengine's root ``LOOPS`` so that mmdet and mmaction2 configs
(whatever their ``default_scope``) find them by name.
"""
from mmengine.registry import Registry

MUTUAL = Registry('mutual learning component', locations=['mutualnet_mm.engine'])


def build_component(cfg: dict):
    """Build a registered component in this package's scope, whatever the default scope.

    (A config's ``default_scope`` is ``mmdet`` or ``mmaction``, which this registry is
    not part of.)
    """
    return MUTUAL.build({**cfg, '_scope_': MUTUAL.scope})
