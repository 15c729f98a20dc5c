"""Slimmable mask head: stock ``FCNMaskHead`` at full width, narrower convs below."""
from typing import Sequence

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS

from ..stock import drop_in_signature
from .base import StockSlimmableHead

_SLIMMABLE_UPSAMPLES = (None, 'deconv', 'nearest', 'bilinear')


@MODELS.register_module()
@drop_in_signature(FCNMaskHead)
class SlimmableFCNMaskHead(StockSlimmableHead, FCNMaskHead):
    """mmdet ``FCNMaskHead`` whose channels follow the active width.

    At width ``w`` it computes ``FCNMaskHead`` with ``in_channels`` and
    ``conv_out_channels`` scaled by ``scale_channels``: the convs and the upsampling
    deconv narrow, ``conv_logits`` keeps one output per class.

    Args:
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``.
        *args, **kwargs: mmdet ``FCNMaskHead`` arguments; ``upsample_cfg`` type one of
            None, 'deconv', 'nearest', 'bilinear' (not 'carafe'); ``norm_cfg`` None or
            batch norm.
    """

    channel_args = ('in_channels', 'conv_out_channels')
    prediction_layers = ('conv_logits',)

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        super().__init__(*args, width_range=width_range, **kwargs)
        if self.upsample_method not in _SLIMMABLE_UPSAMPLES:
            raise ValueError(f'{type(self).__name__} cannot slim upsample type '
                             f'{self.upsample_method!r}; allowed: {_SLIMMABLE_UPSAMPLES}')
