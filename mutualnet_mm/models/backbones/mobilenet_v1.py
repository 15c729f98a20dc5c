"""MobileNetV1 for mmdet, plain and slimmable.

mmdet has no MobileNetV1, so this file defines the stock network too. Its layers map one
to one onto the reference MutualNet MobileNetV1 checkpoint (``features.0`` = ``stem``,
``features.{i}`` = ``layers.{i - 1}``): a 3x3 stride-2 stem conv with 32 channels, then 13
depthwise-separable blocks, each a depthwise 3x3 conv (``dw``) and a pointwise 1x1 conv
(``pw``), every conv followed by a batch norm and an activation, convs without bias.

For detection the 13 blocks form 4 stages that end at strides 4, 8, 16 and 32:

=====  ==========  ========  ===============
stage  blocks      channels  output stride
=====  ==========  ========  ===============
0      0 - 2       128       4
1      3 - 4       256       8
2      5 - 10      512       16
3      11 - 12     1024      32
=====  ==========  ========  ===============

``SlimmableMobileNetV1`` at width ``w`` is ``MobileNetV1(widen_factor=widen_factor * w)``.
"""
from collections import OrderedDict
from typing import Optional, Sequence, Tuple, Union

from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...ops import convert_to_slimmable, make_divisible
from ..stock import StockSlimmable, drop_in_signature, stock_arguments

_NOT_FORWARDED = ('init_cfg',)


@MODELS.register_module()
class MobileNetV1(BaseModule):
    """MobileNetV1 backbone (Howard et al., 2017).

    Args:
        widen_factor: Width multiplier; every layer has
            ``make_divisible(channels * widen_factor, 8)`` channels.
        out_indices: Stages whose outputs are returned (0 - 3, strides 4 - 32).
        frozen_stages: Stages to freeze (parameters fixed, norms in eval mode);
            -1 freezes nothing, 0 the stem, ``k`` the stem and stages ``0 .. k - 1``.
        conv_cfg: Config of the conv layers (default ``Conv2d``).
        norm_cfg: Config of the norm layers.
        act_cfg: Config of the activations.
        norm_eval: Keep the batch norms in eval mode during training.
        init_cfg: Initialization config (default: Kaiming convs, unit norms).
    """

    #: ``(output channels, stride)`` of the 13 depthwise-separable blocks.
    block_settings = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                      (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2),
                      (1024, 1))
    #: Channels of the stem conv.
    stem_channels = 32
    #: Index of the last block of each stage.
    stage_ends = (2, 4, 10, 12)

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),  # noqa: B006 (never mutated)
                 act_cfg: dict = dict(type='ReLU'),  # noqa: B006
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
        super().__init__(init_cfg)
        num_stages = len(self.stage_ends)
        if not set(out_indices) <= set(range(num_stages)):
            raise ValueError(f'out_indices must be a subset of {tuple(range(num_stages))}, '
                             f'got {tuple(out_indices)}')
        if frozen_stages not in range(-1, num_stages + 1):
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages!r}')
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> ConvModule:
            return ConvModule(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=groups, conv_cfg=conv_cfg,
                              norm_cfg=norm_cfg, act_cfg=act_cfg)

        in_channels = make_divisible(self.stem_channels * widen_factor)
        self.stem = conv(3, in_channels, 3, stride=2)
        blocks = []
        for channels, stride in self.block_settings:
            out_channels = make_divisible(channels * widen_factor)
            blocks.append(nn.Sequential(OrderedDict(
                dw=conv(in_channels, in_channels, 3, stride=stride, groups=in_channels),
                pw=conv(in_channels, out_channels, 1))))
            in_channels = out_channels
        self.layers = nn.Sequential(*blocks)

    def stage_blocks(self, stage: int) -> nn.Sequential:
        """The blocks of stage ``stage`` (0 - 3)."""
        start = self.stage_ends[stage - 1] + 1 if stage else 0
        return self.layers[start:self.stage_ends[stage] + 1]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for index, block in enumerate(self.layers):
            x = block(x)
            if index in self.stage_ends and self.stage_ends.index(index) in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        frozen = [self.stem] if self.frozen_stages >= 0 else []
        frozen += [self.stage_blocks(stage) for stage in range(self.frozen_stages)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'MobileNetV1':
        """Set the training mode, keeping frozen stages (and norms if ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


@MODELS.register_module()
@drop_in_signature(MobileNetV1)
class SlimmableMobileNetV1(StockSlimmable, MobileNetV1):
    """:class:`MobileNetV1` whose width can be set at run time.

    Args:
        *args, **kwargs: :class:`MobileNetV1` arguments (``widen_factor`` is the full
            width).
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``,
            the range of the reference MutualNet MobileNetV1.
    """

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(MobileNetV1, args, kwargs)
        super().__init__(**kwargs)
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items()
                              if k not in _NOT_FORWARDED and k != 'widen_factor'}
        convert_to_slimmable(self)
        self.stem.conv.slim_in = False  # the colour channels

    def stock_config(self, width: float) -> dict:
        return dict(type='MobileNetV1', **self._stock_kwargs,
                    widen_factor=self.widen_factor * width)
