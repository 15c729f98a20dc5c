"""Slimmable detection heads and the RoI extractor they need, registered in mmdet's MODELS."""
from .bbox_heads import (
                         SlimmableConvFCBBoxHead,
                         SlimmableShared2FCBBoxHead,
                         SlimmableShared4Conv1FCBBoxHead,
)
from .mask_head import SlimmableFCNMaskHead
from .retina_head import SlimmableRetinaHead
from .roi_extractor import SlimmableSingleRoIExtractor
from .rpn_head import SlimmableRPNHead
from .rtmdet_head import SlimmableRTMDetInsSepBNHead, SlimmableRTMDetSepBNHead
from .video_heads import SlimmableSlowFastHead, SlimmableX3DHead

__all__ = [
    'SlimmableConvFCBBoxHead', 'SlimmableFCNMaskHead', 'SlimmableRPNHead',
    'SlimmableRTMDetInsSepBNHead', 'SlimmableRTMDetSepBNHead', 'SlimmableRetinaHead',
    'SlimmableShared2FCBBoxHead', 'SlimmableShared4Conv1FCBBoxHead',
    'SlimmableSingleRoIExtractor', 'SlimmableSlowFastHead', 'SlimmableX3DHead',
]
