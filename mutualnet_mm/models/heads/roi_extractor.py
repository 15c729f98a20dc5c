"""RoI feature extractor whose output channels follow its input features."""
from operator import itemgetter
from typing import Optional, Tuple

from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS
from torch import Tensor

from ..stock import InputTwin


@MODELS.register_module()
class SlimmableSingleRoIExtractor(SingleRoIExtractor):
    """mmdet ``SingleRoIExtractor`` that pools as many channels as the features have.

    The stock extractor allocates its output with ``out_channels`` channels, so it fails
    on a pyramid that runs fewer. It has no parameters, so this one simply pools the
    features' channels (at most ``out_channels``); at full width it is the stock module.
    Features are made contiguous first: mmcv's ``RoIAlign`` silently misreads channel
    slices of a wider tensor.
    """

    #: It pools one pyramid level at a time; all levels have the neck's channels.
    input_twin = InputTwin('SingleRoIExtractor', 'out_channels', 'neck', itemgetter(0))

    def forward(self, feats: Tuple[Tensor], rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        channels = feats[0].shape[1]
        if channels > self.out_channels:
            raise ValueError(f'{type(self).__name__} got features with {channels} channels; '
                             f'it pools at most out_channels={self.out_channels}')
        feats = tuple(feat.contiguous() for feat in feats)
        full = self.out_channels
        self.out_channels = channels
        try:
            return super().forward(feats, rois, roi_scale_factor)
        finally:
            self.out_channels = full
