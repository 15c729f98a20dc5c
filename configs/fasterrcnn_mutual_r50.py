# Faster R-CNN R50-FPN on COCO (1x), one set of weights for every (width, scale).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/mutual_schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(type='SlimmableResNet', width_range=(0.25, 1.0), frozen_stages=-1,
                  norm_cfg=norm_cfg, norm_eval=False),
    # the whole detector follows the width, as in maskrcnn_mutual_r50.py
    neck=dict(type='SlimmableFPN', slim_outputs=True),
    rpn_head=dict(type='SlimmableRPNHead'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='SlimmableSingleRoIExtractor'),
        bbox_head=dict(type='SlimmableShared2FCBBoxHead')))

# Checkpoints written atomically, the old one removed only after the new one is complete;
# SIGTERM saves and stops (mutualnet_mm/reliability/checkpoint_hook.py).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
