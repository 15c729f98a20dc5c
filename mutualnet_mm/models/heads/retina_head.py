"""Slimmable RetinaNet head: stock ``RetinaHead`` at full width, narrower towers below."""
from mmdet.models.dense_heads import RetinaHead
from mmdet.registry import MODELS

from ..stock import drop_in_signature
from .base import StockSlimmableHead


@MODELS.register_module()
@drop_in_signature(RetinaHead)
class SlimmableRetinaHead(StockSlimmableHead, RetinaHead):
    """mmdet ``RetinaHead`` whose input and tower channels follow the active width.

    At width ``w`` it computes ``RetinaHead`` with ``in_channels`` and ``feat_channels``
    scaled by ``scale_channels``; ``retina_cls`` and ``retina_reg`` keep all their outputs.
    Arguments as :class:`~.base.StockSlimmableHead`.
    """

    channel_args = ('in_channels', 'feat_channels')
    prediction_layers = ('retina_cls', 'retina_reg')
