# Mask R-CNN R50-FPN on COCO (1x), one set of weights for every (width, scale).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './_base_/mutual_schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# Batch statistics differ per width and scale: every BN trains (no norm_eval, no frozen
# stages) and is synchronized across GPUs (a single process falls back to plain BN).
norm_cfg = dict(type='SyncBN', requires_grad=True)
# The whole detector follows the width: at 0.25 it costs 0.066 of full width, where
# slimming the backbone alone leaves 0.682 (benchmarks/detector_cost.py). For the
# reference work's backbone-only slimming: maskrcnn_mutual_r50_backbone-only.py.
model = dict(
    backbone=dict(type='SlimmableResNet', width_range=(0.25, 1.0), frozen_stages=-1,
                  norm_cfg=norm_cfg, norm_eval=False),
    neck=dict(type='SlimmableFPN', slim_outputs=True),
    rpn_head=dict(type='SlimmableRPNHead'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='SlimmableSingleRoIExtractor'),
        bbox_head=dict(type='SlimmableShared2FCBBoxHead'),
        mask_roi_extractor=dict(type='SlimmableSingleRoIExtractor'),
        mask_head=dict(type='SlimmableFCNMaskHead')))

# 8 GPUs x 2 images, as the stock recipe.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Checkpoints written atomically, the old one removed only after the new one is complete;
# SIGTERM saves and stops (mutualnet_mm/reliability/checkpoint_hook.py).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
