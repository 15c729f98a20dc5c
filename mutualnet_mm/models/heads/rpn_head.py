"""Slimmable RPN head: stock ``RPNHead`` at full width, narrower hidden convs below."""
from typing import Sequence

from mmdet.models.dense_heads import RPNHead
from mmdet.registry import MODELS

from ..stock import drop_in_signature, stock_arguments
from .base import StockSlimmableHead


@MODELS.register_module()
@drop_in_signature(RPNHead)
class SlimmableRPNHead(StockSlimmableHead, RPNHead):
    """mmdet ``RPNHead`` whose input and hidden channels follow the active width.

    At width ``w`` it computes ``RPNHead`` with ``in_channels`` and ``feat_channels``
    scaled by ``scale_channels``; ``rpn_cls`` and ``rpn_reg`` keep all their outputs.

    Args:
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``.
        *args, **kwargs: mmdet ``RPNHead`` arguments (``in_channels``, ``feat_channels``,
            ``anchor_generator``, ``bbox_coder``, losses, ...).
    """

    stock_type = 'RPNHead'
    channel_args = ('in_channels', 'feat_channels')
    prediction_layers = ('rpn_cls', 'rpn_reg')

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(RPNHead, args, kwargs)
        super().__init__(**kwargs)
        self.make_slimmable(width_range, kwargs)
