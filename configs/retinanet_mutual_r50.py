# RetinaNet R50-FPN on COCO (1x), one set of weights for every (width, scale).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
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
    bbox_head=dict(type='SlimmableRetinaHead'))

# The stock RetinaNet recipe's optimizer (lr 0.01) and gradient clipping.
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))

# Checkpoints written atomically, the old one removed only after the new one is complete;
# SIGTERM saves and stops (mutualnet_mm/reliability/checkpoint_hook.py).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
