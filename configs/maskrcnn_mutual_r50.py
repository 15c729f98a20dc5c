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
model = dict(
    backbone=dict(type='SlimmableResNet', width_range=(0.25, 1.0), frozen_stages=-1,
                  norm_cfg=norm_cfg, norm_eval=False),
    neck=dict(type='SlimmableFPN'))

# 8 GPUs x 2 images, as the stock recipe.
auto_scale_lr = dict(enable=False, base_batch_size=16)
