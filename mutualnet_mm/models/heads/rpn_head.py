"""Slimmable RPN head: stock ``RPNHead`` at full width, narrower hidden convs below."""
from mmdet.models.dense_heads import RPNHead
from mmdet.registry import MODELS

from ..stock import drop_in_signature
from .base import StockSlimmableHead


@MODELS.register_module()
@drop_in_signature(RPNHead)
class SlimmableRPNHead(StockSlimmableHead, RPNHead):
    """mmdet ``RPNHead`` whose input and hidden channels follow the active width.

    At width ``w`` it computes ``RPNHead`` with ``in_channels`` and ``feat_channels``
    scaled by ``scale_channels``; ``rpn_cls`` and ``rpn_reg`` keep all their outputs.
    Arguments as :class:`~.base.StockSlimmableHead`.
    """

    channel_args = ('in_channels', 'feat_channels')
    prediction_layers = ('rpn_cls', 'rpn_reg')
