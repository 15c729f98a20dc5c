"""Slimmable RoI box heads: the ``ConvFCBBoxHead`` family of mmdet.

Convolutions and fully connected layers follow the active width; ``fc_cls`` and ``fc_reg``
keep their outputs. RoI features enter the first fully connected layer flattened channel
by channel (``c * roi_feat_area + position``), so the first ``c'`` channels are the first
``c' * roi_feat_area`` features: a prefix slice of the full layer's inputs, as for any layer.
"""
from mmdet.models.roi_heads.bbox_heads import (
    ConvFCBBoxHead,
    Shared2FCBBoxHead,
    Shared4Conv1FCBBoxHead,
)
from mmdet.registry import MODELS

from ..stock import drop_in_signature
from .base import StockSlimmableHead


class _SlimmableConvFCMixin(StockSlimmableHead):
    """Channel arguments and fixed prediction layers of the ``ConvFCBBoxHead`` family."""

    channel_args = ('in_channels', 'conv_out_channels', 'fc_out_channels')
    prediction_layers = ('fc_cls', 'fc_reg')


@MODELS.register_module()
@drop_in_signature(ConvFCBBoxHead)
class SlimmableConvFCBBoxHead(_SlimmableConvFCMixin, ConvFCBBoxHead):
    """mmdet ``ConvFCBBoxHead`` whose channels follow the active width.

    At width ``w`` it computes ``ConvFCBBoxHead`` with ``in_channels``,
    ``conv_out_channels`` and ``fc_out_channels`` scaled by ``scale_channels``; arguments
    as :class:`~.base.StockSlimmableHead` (``norm_cfg`` None or batch norm).
    """


@MODELS.register_module()
@drop_in_signature(Shared2FCBBoxHead)
class SlimmableShared2FCBBoxHead(_SlimmableConvFCMixin, Shared2FCBBoxHead):
    """mmdet ``Shared2FCBBoxHead`` (Faster/Mask R-CNN) whose channels follow the width."""


@MODELS.register_module()
@drop_in_signature(Shared4Conv1FCBBoxHead)
class SlimmableShared4Conv1FCBBoxHead(_SlimmableConvFCMixin, Shared4Conv1FCBBoxHead):
    """mmdet ``Shared4Conv1FCBBoxHead`` whose channels follow the width (with batch norm or
    none: the GN variants of mmdet's configs cannot slim)."""
