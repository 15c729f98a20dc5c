"""Slimmable RetinaNet head: stock ``RetinaHead`` at full width, narrower towers below."""
from typing import Sequence

from mmdet.models.dense_heads import RetinaHead
from mmdet.registry import MODELS

from ..stock import drop_in_signature, stock_arguments
from .base import StockSlimmableHead


@MODELS.register_module()
@drop_in_signature(RetinaHead)
class SlimmableRetinaHead(StockSlimmableHead, RetinaHead):
    """mmdet ``RetinaHead`` whose input and tower channels follow the active width.

    At width ``w`` it computes ``RetinaHead`` with ``in_channels`` and ``feat_channels``
    scaled by ``scale_channels``; ``retina_cls`` and ``retina_reg`` keep all their outputs.

    Args:
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``.
        *args, **kwargs: mmdet ``RetinaHead`` arguments (``num_classes``, ``in_channels``,
            ``stacked_convs``, ``norm_cfg`` (None or batch norm), ...).
    """

    stock_type = 'RetinaHead'
    channel_args = ('in_channels', 'feat_channels')
    prediction_layers = ('retina_cls', 'retina_reg')

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(RetinaHead, args, kwargs)
        super().__init__(**kwargs)
        self.make_slimmable(width_range, kwargs)
