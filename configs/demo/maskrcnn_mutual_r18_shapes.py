# A small Mask R-CNN on the generated shapes data (tools/make_demo_data.py), trained by
# mutual learning on a CPU in minutes. Same recipe as maskrcnn_mutual_r50.py, scaled down.
_base_ = '../maskrcnn_mutual_r50.py'

data_root = 'data/coco_shapes/'
classes = ('circle', 'square', 'triangle', 'star', 'cross')
image_size = 128

norm_cfg = dict(type='BN', requires_grad=True)
# The whole detector follows the width (neck, RPN head, RoI box and mask heads too): with
# a backbone this small, slimming the backbone alone would barely change the cost.
# Trained from scratch: a Pretrained init_cfg without a checkpoint is the stock
# initialization. To start from the digits classifier demo's backbone
# (resnet18_mutual_digits.py), fill it in: --cfg-options
# model.backbone.init_cfg.checkpoint=work_dirs/digits/epoch_30.pth (or train
# configs/finetune/maskrcnn_mutual_r18_shapes_from-digits.py).
model = dict(
    backbone=dict(depth=18, base_channels=32, stem_channels=32, norm_cfg=norm_cfg,
                  init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, slim_outputs=True),
    rpn_head=dict(type='SlimmableRPNHead', in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0])),
    roi_head=dict(
        bbox_roi_extractor=dict(type='SlimmableSingleRoIExtractor', out_channels=64),
        bbox_head=dict(type='SlimmableShared2FCBBoxHead', in_channels=64,
                       fc_out_channels=256, num_classes=len(classes)),
        # 14x14 masks from 7x7 RoI features: objects here are at most 77 px, and the
        # stock 28x28 masks cost more than the whole backbone (bbox mAP 0.29 vs 0.20 when
        # training the full network alone for 12 epochs, 26% less time per iteration).
        mask_roi_extractor=dict(type='SlimmableSingleRoIExtractor', out_channels=64,
                                roi_layer=dict(output_size=7)),
        mask_head=dict(type='SlimmableFCNMaskHead', num_convs=2, in_channels=64,
                       conv_out_channels=64,
                       num_classes=len(classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64), mask_size=14)),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

# A corrupt image fails naming itself (tools/train.py --check-data all finds them all first);
# the test pipeline keeps the stock loader, which the inference tools look for.
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    batch_sampler=None,
    dataset=dict(**_dataset, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=1,
    dataset=dict(**_dataset, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Short schedule, AdamW (training from scratch), validation at the end. The full network
# trains alone for the first half of the schedule (12 of 24 epochs; a shorter max_epochs
# keeps the proportion), then with the cohort: from scratch on this budget,
# the cohort from the first iteration left the full configuration far behind a network
# trained alone (method study in studies/README.md).
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs,
                 mutual=dict(scales=(1.0, 0.75, 0.5), full_only_fraction=0.5))
_grid = dict(widths=(1.0, 0.75, 0.5, 0.25), scales=(1.0, 0.75, 0.5),
             calibration=dict(num_batches=4))
val_cfg = _grid
test_cfg = _grid
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=2e-5),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

# Seeded, so that the documented figures can be reproduced (`--cfg-options
# randomness.seed=N` draws another run).
randomness = dict(seed=0)
