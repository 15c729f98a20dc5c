# Mask R-CNN R50-FPN on COCO (1x) with only the backbone following the width, as in the
# reference work: the FPN takes the narrower features and keeps 256 output channels, the
# heads are mmdet's stock ones. Cost at width 0.25: 0.682 of full width (whole detector:
# 0.066). On the demo data it was the more accurate mode near full cost
# (studies/README.md, method study).
_base_ = './maskrcnn_mutual_r50.py'

model = dict(
    neck=dict(slim_outputs=False),
    rpn_head=dict(type='RPNHead'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='SingleRoIExtractor'),
        bbox_head=dict(type='Shared2FCBBoxHead'),
        mask_roi_extractor=dict(type='SingleRoIExtractor'),
        mask_head=dict(type='FCNMaskHead')))
