"""Slimmable MobileNetV2: stock ``MobileNetV2`` at full width, narrower ones below.

At width ``w`` the network is the stock ``MobileNetV2`` (mmdet's; mmpretrain's for its twin
in :mod:`..classification`) with ``widen_factor * w``: every layer
has ``make_divisible(channels * widen_factor * w, 8)`` channels, hidden layers 6 times their
block's input, and the last 1x1 conv keeps 1280 channels as in the stock class (which only
widens it for widen factors above 1). Depthwise convs follow their input.
"""
from typing import List, Optional, Sequence

from mmdet.models.backbones import MobileNetV2
from mmdet.models.layers import InvertedResidual
from mmdet.registry import MODELS
from torch import nn

from ...ops import convert_to_slimmable
from ..stock import StockSlimmable, drop_in_signature, stock_arguments

_NOT_FORWARDED = ('init_cfg', 'pretrained', 'widen_factor')
#: The smallest widen factor of the stock MobileNetV2 family.
_SMALLEST_WIDEN_FACTOR = 0.35


class MobileNetV2Family(StockSlimmable):
    """A stock ``MobileNetV2`` (the class's ``stock_class``) whose width can be set at run time.

    Args:
        *args, **kwargs: The stock ``MobileNetV2``'s arguments, in its order
            (``widen_factor``: the full network's multiplier; ``out_indices``,
            ``frozen_stages``, ``conv_cfg``, ``norm_cfg``, ``act_cfg``, ``norm_eval``,
            ``with_cp``, ``init_cfg``, ...).
        width_range: Smallest and largest width multiplier. Default
            ``(min(1, 0.35 / widen_factor), 1.0)``: down to the smallest stock
            MobileNetV2 (``widen_factor`` 0.35), or the full network alone when
            ``widen_factor`` is below that. The floor is structural: at
            ``widen_factor * w`` up to about 0.28 the stem (32) and the first block (16)
            both round to 8 channels, and the stock block then adds a shortcut that the
            full-width network lacks, so no stock network computes that width.
            A range whose smallest width is such a width is rejected.
    """

    #: The attribute by which the stock inverted-residual blocks tell their shortcut.
    shortcut_flag: str

    def __init__(self, *args, width_range: Optional[Sequence[float]] = None,
                 **kwargs) -> None:
        kwargs = stock_arguments(self.stock_class, args, kwargs)
        super().__init__(**kwargs)
        if width_range is None:
            width_range = (min(1.0, _SMALLEST_WIDEN_FACTOR / self.widen_factor), 1.0)
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        self._check_shortcuts(self.width_range[0])
        convert_to_slimmable(self)
        self.conv1.conv.slim_in = False  # the colour channels

    def _check_shortcuts(self, width: float) -> None:
        """Reject a width whose stock network has shortcuts this one lacks.

        The widths with extra shortcuts are exactly those below a threshold (all
        other stride-1 blocks with a channel change separate at smaller widths than
        the stem / first-block pair), so checking the smallest width covers the range.
        """
        if self._shortcuts(self.build_stock(width, device='meta')) != self._shortcuts(self):
            raise ValueError(
                f'SlimmableMobileNetV2 cannot run at width {width:g} with widen_factor '
                f'{self.widen_factor:g}: the stock MobileNetV2 at widen_factor '
                f'{self.widen_factor * width:g} adds shortcuts the full-width network '
                'lacks (its stem and first block both round to 8 channels); raise the '
                f'smallest width of width_range {self.width_range}')

    def _shortcuts(self, model: nn.Module) -> List[bool]:
        """Which inverted-residual blocks of ``model`` add their input to their output."""
        return [getattr(m, self.shortcut_flag) for m in model.modules()
                if hasattr(m, self.shortcut_flag)]

    def stock_config(self, width: float) -> dict:
        return dict(type='MobileNetV2', **self._stock_kwargs,
                    widen_factor=self.widen_factor * width)


@MODELS.register_module()
@drop_in_signature(MobileNetV2)
class SlimmableMobileNetV2(MobileNetV2Family, MobileNetV2):
    """mmdet ``MobileNetV2`` whose width can be set at run time (see :class:`MobileNetV2Family`).

    It loads an mmpretrain MobileNetV2 checkpoint as it is.
    """

    shortcut_flag = 'with_res_shortcut'

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        """Load, renaming the block layers of an mmpretrain checkpoint to mmdet's first.

        mmpretrain's blocks keep their convs in ``conv.<i>`` (expand, depthwise, linear; no
        expand conv at expansion ratio 1), mmdet's name them ``expand_conv``,
        ``depthwise_conv`` and ``linear_conv``: so a classifier trained here initializes
        this backbone as it is (``init_cfg`` Pretrained, ``prefix='backbone.'``).
        """
        for name, block in self.named_modules():
            if not isinstance(block, InvertedResidual):
                continue
            targets = ['expand_conv'] * block.with_expand_conv + ['depthwise_conv', 'linear_conv']
            for index, target in enumerate(targets):
                old = f'{prefix}{name}.conv.{index}.'
                for key in [k for k in state_dict if k.startswith(old)]:
                    state_dict[f'{prefix}{name}.{target}.{key[len(old):]}'] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)
