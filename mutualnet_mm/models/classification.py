"""Slimmable image classifiers, registered in mmpretrain's MODELS.

Drop-ins for mmpretrain's own classes under the names the detection side uses:
``SlimmableResNet`` is mmpretrain's ``ResNet`` (same arguments, state-dict names and
outputs at width 1.0) and at width ``w`` exactly mmpretrain's ``ResNet`` with
``base_channels = stem_channels = make_divisible(64 w, 8)``; ``SlimmableMobileNetV2`` is
mmpretrain's ``MobileNetV2(widen_factor=w)``; ``SlimmableMobileNetV1`` is this package's
MobileNetV1 (no OpenMMLab library has one). ``SlimmableLinearClsHead`` takes whatever
channels the backbone delivers; its class outputs never shrink.

A classifier's checkpoint initializes the mmdet backbone of the same type with
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``: ResNet and
MobileNetV1 tensors carry the same names on both sides, and mmdet's
``SlimmableMobileNetV2`` renames mmpretrain's block layers (``conv.<i>``) as it loads.
"""
from typing import Sequence

from mmpretrain.models.backbones import MobileNetV2 as PretrainMobileNetV2
from mmpretrain.models.backbones import ResNet as PretrainResNet
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS

from ..ops import convert_to_slimmable, scale_channels
from .backbones.mobilenet_v1 import MobileNetV1, SlimmableMobileNetV1
from .stock import StockSlimmable

_NOT_FORWARDED = ('init_cfg', 'pretrained', 'base_channels', 'stem_channels')

MODELS.register_module(module=MobileNetV1)
MODELS.register_module(module=SlimmableMobileNetV1)


@MODELS.register_module(name='SlimmableResNet')
class SlimmableClsResNet(StockSlimmable, PretrainResNet):
    """mmpretrain ``ResNet`` whose width can be set at run time.

    Args:
        depth: 18, 34, 50, 101 or 152.
        width_range: Smallest and largest width multiplier (default ``(0.25, 1.0)``).
        **kwargs: mmpretrain ``ResNet`` arguments (``out_indices``, ``norm_cfg``,
            ``deep_stem``, ``zero_init_residual``, ``drop_path_rate``, ``init_cfg``, ...).
    """

    stock_scope = 'mmpretrain'

    def __init__(self, depth: int, width_range: Sequence[float] = (0.25, 1.0),
                 **kwargs) -> None:
        if depth not in self.arch_settings:
            raise ValueError(f'SlimmableResNet depth must be one of '
                             f'{sorted(self.arch_settings)}, got {depth!r}')
        super().__init__(depth, **kwargs)
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        self._stock_kwargs['depth'] = depth
        self._full_base = kwargs.get('base_channels', 64)
        self._full_stem = kwargs.get('stem_channels', 64)
        convert_to_slimmable(self)
        first_conv = self.stem[0].conv if self.deep_stem else self.conv1
        first_conv.slim_in = False  # the colour channels

    def stock_config(self, width: float) -> dict:
        return dict(type='ResNet', **self._stock_kwargs,
                    base_channels=scale_channels(self._full_base, width),
                    stem_channels=scale_channels(self._full_stem, width))


@MODELS.register_module(name='SlimmableMobileNetV2')
class SlimmableClsMobileNetV2(StockSlimmable, PretrainMobileNetV2):
    """mmpretrain ``MobileNetV2`` whose width can be set at run time.

    At width ``w`` it is ``MobileNetV2(widen_factor=widen_factor * w)``; the last 1x1 conv
    keeps its 1280 channels, as in the stock class and the reference.

    Args:
        widen_factor: Width multiplier of the full network.
        width_range: Smallest and largest width (default ``(0.35, 1.0)``; below about
            0.28 the stock network adds a shortcut the full one lacks).
        **kwargs: mmpretrain ``MobileNetV2`` arguments.
    """

    stock_scope = 'mmpretrain'

    def __init__(self, widen_factor: float = 1.0, width_range: Sequence[float] = (0.35, 1.0),
                 **kwargs) -> None:
        super().__init__(widen_factor=widen_factor, **kwargs)
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        low = self.width_range[0]
        if _shortcuts(self.build_stock(low, device='meta')) != _shortcuts(self):
            raise ValueError(f'SlimmableMobileNetV2 cannot run at width {low:g} with '
                             f'widen_factor {widen_factor:g}: the stock network there adds '
                             'shortcuts the full one lacks; raise the smallest width of '
                             f'width_range {self.width_range}')
        convert_to_slimmable(self)
        self.conv1.conv.slim_in = False  # the colour channels

    def stock_config(self, width: float) -> dict:
        return dict(type='MobileNetV2', **self._stock_kwargs,
                    widen_factor=self.widen_factor * width)


def _shortcuts(model) -> list:
    return [m.use_res_connect for m in model.modules() if hasattr(m, 'use_res_connect')]


@MODELS.register_module()
class SlimmableLinearClsHead(LinearClsHead):
    """mmpretrain ``LinearClsHead`` that takes a slimmable backbone's features at any width.

    At a backbone width it computes the stock head built with ``in_channels`` equal to
    the channels the backbone delivers; the class scores keep their size.

    Args:
        num_classes: Number of classes.
        in_channels: Input channels at full width.
        **kwargs: mmpretrain ``LinearClsHead`` arguments (``loss``, ``topk``, ...).
    """

    def __init__(self, num_classes: int, in_channels: int, **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        convert_to_slimmable(self)
        self.fc.slim_out = False  # the class scores


__all__ = ['SlimmableClsMobileNetV2', 'SlimmableClsResNet', 'SlimmableLinearClsHead']
