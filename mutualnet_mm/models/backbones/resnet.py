"""Slimmable ResNet for mmdet: stock ``ResNet`` at full width, narrower ones below.

At width ``w`` the network is mmdet's ``ResNet`` with
``base_channels = stem_channels = make_divisible(64 * w, 8)``; every stage doubles the
base as in the stock network, so each width is exactly expressible as a stock ResNet
(and exportable as one). Per-stage rounding would give finer steps in deep stages but
widths no stock ResNet can express (e.g. 20, 38, ... middle channels at 0.3).
"""
from typing import Sequence

from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS

from ...ops import convert_to_slimmable, scale_channels
from ..stock import StockSlimmable

# Arguments the twin does not take as given: weights, and the widths set per width.
_NOT_FORWARDED = ('init_cfg', 'pretrained', 'base_channels', 'stem_channels')


@MODELS.register_module()
class SlimmableResNet(StockSlimmable, ResNet):
    """mmdet ``ResNet`` whose width can be set at run time.

    Args:
        depth: 18, 34, 50, 101 or 152.
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``:
            at 0.25 the base has 16 channels, a quarter of the full network's.
        **kwargs: mmdet ``ResNet`` arguments (``out_indices``, ``frozen_stages``,
            ``norm_cfg``, ``norm_eval``, ``style``, ``deep_stem``, ``init_cfg``, ...).
            DCN and plugins are not slimmable.
    """

    def __init__(self, depth: int, width_range: Sequence[float] = (0.25, 1.0),
                 **kwargs) -> None:
        if depth not in self.arch_settings:
            raise ValueError(f'SlimmableResNet depth must be one of '
                             f'{sorted(self.arch_settings)}, got {depth!r}')
        if kwargs.get('dcn') is not None or kwargs.get('plugins'):
            raise ValueError('SlimmableResNet does not support dcn or plugins')
        super().__init__(depth, **kwargs)
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        self._stock_kwargs['depth'] = depth
        convert_to_slimmable(self)
        first_conv = self.stem[0] if self.deep_stem else self.conv1
        first_conv.slim_in = False  # the colour channels

    def stock_config(self, width: float) -> dict:
        return dict(type='ResNet', **self._stock_kwargs,
                    base_channels=scale_channels(self.base_channels, width),
                    stem_channels=scale_channels(self.stem_channels, width))
