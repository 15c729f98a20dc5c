# RTMDet on the generated shapes data (tools/make_demo_data.py), trained by mutual
# learning over width, depth and input scale, in one process. The full network is RTMDet-s
# (widen 0.5, deepen 0.33); at width 0.75 and depth 0.5 it is RTMDet-tiny (widen 0.375,
# and the same block counts as deepen 0.167), which tools/export_subnet.py --width 0.75
# --depth 0.5 writes as mmdet's own model of that size.
_base_ = '../rtmdet/rtmdet_l_mutual_coco.py'

data_root = 'data/coco_shapes/'
classes = ('circle', 'square', 'triangle', 'star', 'cross')
image_size = 128

norm_cfg = dict(type='BN')  # one process
model = dict(
    backbone=dict(deepen_factor=0.33, widen_factor=0.5, norm_cfg=norm_cfg, init_cfg=None,
                  width_range=(0.75, 1.0), depth_range=(0.5, 1.0)),
    neck=dict(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1,
              norm_cfg=norm_cfg),
    bbox_head=dict(num_classes=len(classes), in_channels=128, feat_channels=128,
                   exp_on_reg=False, norm_cfg=norm_cfg),
    test_cfg=dict(nms_pre=1000, max_per_img=20))

# No mosaic or mix-up at this size: the demo's images hold a few shapes each.
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
_dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(**_dataset, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    dataset=dict(**_dataset, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Short schedule, validation at the end; the full network trains alone for the first half.
max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs, dynamic_intervals=None,
                 mutual=dict(scales=(1.0, 0.75, 0.5), full_only_fraction=0.5))
_grid = dict(widths=(1.0, 0.75), depths=(1.0, 0.5), scales=(1.0, 0.75, 0.5),
             calibration=dict(num_batches=4))
val_cfg = _grid
test_cfg = _grid
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=2e-5),
]
custom_hooks = []  # no EMA (a few hundred iterations) and no pipeline switch
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
model_wrapper_cfg = None  # one process

# Seeded, so that the documented figures can be reproduced (`--cfg-options
# randomness.seed=N` draws another run).
randomness = dict(seed=0)
