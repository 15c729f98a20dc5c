# The demo Mask R-CNN with only the backbone following the width, as in the reference
# work's detectors: the FPN takes the narrower features but keeps its 64 output channels,
# and the RPN and RoI heads are mmdet's stock ones. Compared with whole-detector slimming
# in studies/README.md (method study): more accurate near full cost (bbox mAP 0.590
# vs. 0.466), but the grid spans only 0.174-0.405 GFLOPs (whole detector: 0.015-0.418).
_base_ = './maskrcnn_mutual_r18_shapes.py'

model = dict(
    neck=dict(slim_outputs=False),
    rpn_head=dict(type='RPNHead'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='SingleRoIExtractor'),
        bbox_head=dict(type='Shared2FCBBoxHead'),
        mask_roi_extractor=dict(type='SingleRoIExtractor'),
        mask_head=dict(type='FCNMaskHead')))
