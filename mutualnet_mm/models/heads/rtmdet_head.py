"""Slimmable RTMDet heads (detection and instance segmentation): the stock head of every
RTMDet size.

mmdet's RTMDet sizes give the head ``in_channels`` and ``feat_channels`` times the widen
factor (tiny 96, s 128, m 192, l 256). At width ``w`` this head is the stock
``RTMDetSepBNHead`` with ``int(c * w)`` of each, its towers (shared across levels, as
the stock head shares them) slimming with it; the class, box (and objectness)
predictions keep all their outputs. ``exp_on_reg`` is the full network's at every width:
mmdet's tiny and s recipes train without it, m and l with it, a choice of how box
distances are predicted that one shared head cannot make both ways.
"""
from typing import Sequence

from mmdet.models.dense_heads import RTMDetInsSepBNHead, RTMDetSepBNHead
from mmdet.registry import MODELS

from ...ops import widen_channels
from ...ops.segments import SegmentedConv2d
from ..stock import drop_in_signature
from .base import StockSlimmableHead


@MODELS.register_module()
@drop_in_signature(RTMDetSepBNHead)
class SlimmableRTMDetSepBNHead(StockSlimmableHead, RTMDetSepBNHead):
    """mmdet ``RTMDetSepBNHead`` whose input and tower channels follow the active width.

    Args:
        *args, **kwargs: mmdet ``RTMDetSepBNHead`` arguments (``num_classes``,
            ``in_channels``, ``feat_channels``, ``stacked_convs``, ``share_conv``,
            ``exp_on_reg``, ...; norms, where they slim, batch norms).
        width_range: Smallest and largest width multiplier. Default ``(0.375, 1.0)``:
            RTMDet-tiny's channels from RTMDet-l's.
    """

    channel_args = ('in_channels', 'feat_channels')
    prediction_layers = ('rtm_cls', 'rtm_reg', 'rtm_obj')
    channel_rule = staticmethod(widen_channels)

    def __init__(self, *args, width_range: Sequence[float] = (0.375, 1.0), **kwargs) -> None:
        super().__init__(*args, width_range=width_range, **kwargs)


@MODELS.register_module()
@drop_in_signature(RTMDetInsSepBNHead)
class SlimmableRTMDetInsSepBNHead(StockSlimmableHead, RTMDetInsSepBNHead):
    """mmdet ``RTMDetInsSepBNHead`` whose input, tower and mask-feature channels follow
    the active width.

    At width ``w`` it computes the stock head with ``in_channels`` and ``feat_channels``
    ``int(c * w)`` (RTMDet-Ins tiny 96, s 128, m 192, l 256); the class, box, kernel
    (and objectness) predictions and the mask prototypes keep all their outputs. The mask
    feature module fuses the pyramid levels, concatenated, which slim apart.

    Args:
        *args, **kwargs: mmdet ``RTMDetInsSepBNHead`` arguments.
        width_range: Smallest and largest width multiplier. Default ``(0.375, 1.0)``.
    """

    channel_args = ('in_channels', 'feat_channels')
    prediction_layers = ('rtm_cls', 'rtm_reg', 'rtm_kernel', 'rtm_obj',
                         'mask_head.projection')
    channel_rule = staticmethod(widen_channels)

    def __init__(self, *args, width_range: Sequence[float] = (0.375, 1.0), **kwargs) -> None:
        super().__init__(*args, width_range=width_range, **kwargs)
        fusion = self.mask_head.fusion_conv
        self.mask_head.fusion_conv = SegmentedConv2d.from_conv(
            fusion, (self.in_channels,) * self.mask_head.num_levels)

    def set_width(self, width: float) -> None:
        super().set_width(width)
        channels = self.channel_plan(self.width)['mask_head.fusion_conv']
        self.mask_head.fusion_conv.set_active_segments(
            inputs=(channels,) * self.mask_head.num_levels)
