"""Slimmable modules that, at every width, compute a stock OpenMMLab module."""
import copy
import functools
import json
from typing import Dict

import torch
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope
from torch import nn

from ..ops import Slimmable


def build_stock(config: dict, scope: str, device='cpu') -> nn.Module:
    """Build a stock module from ``config`` in the registry of ``scope`` (mmdet, mmaction, ...).

    The default scope is switched too: stock modules build their parts (box coders,
    losses, ...) in whatever scope is current. A module that reads a tensor's value while
    it builds (mmpretrain's ResNet: its drop-path rates) cannot be built on the meta
    device; it is built on the CPU and moved there.
    """
    config = copy.deepcopy(dict(config))
    config['type'] = f'{scope}.{config["type"]}'
    with DefaultScope.overwrite_default_scope(scope):
        try:
            with torch.device(device):
                return ROOT_MODELS.build(copy.deepcopy(config))
        except RuntimeError as error:
            if torch.device(device).type != 'meta' or 'meta tensors' not in str(error):
                raise
        return ROOT_MODELS.build(config).to(device)


@functools.lru_cache(maxsize=256)
def _cached_plan(config_json: str, scope: str) -> Dict[str, int]:
    stock = build_stock(json.loads(config_json), scope, device='meta')
    plan = {}
    for name, layer in stock.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            plan[name] = layer.out_channels
        elif isinstance(layer, nn.Linear):
            plan[name] = layer.out_features
    return plan


def stock_channel_plan(config: dict, scope: str) -> Dict[str, int]:
    """Output channels of every conv and linear layer of a stock module, by name.

    The module is built on the meta device (no memory, no initialization) and the
    result is cached per config.
    """
    return dict(_cached_plan(json.dumps(config, sort_keys=True), scope))


class StockSlimmable(Slimmable):
    """A :class:`Slimmable` whose channel plan is read off its stock counterpart.

    Subclasses define :meth:`stock_config`; at each width the module then computes
    exactly the stock module built from that config, by construction.
    """

    #: The OpenMMLab registry scope of the stock counterpart.
    stock_scope = 'mmdet'

    def channel_plan(self, width: float) -> Dict[str, int]:
        return stock_channel_plan(self.stock_config(width), self.stock_scope)

    def build_stock(self, width: float, device='cpu') -> nn.Module:
        """The stock counterpart at ``width`` (freshly initialized)."""
        return build_stock(self.stock_config(width), self.stock_scope, device)
