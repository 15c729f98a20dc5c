# A small RetinaNet on real aerial photographs: NEON's 10 cm RGB orthophotos with
# annotated tree crowns, tiled into 400 px tiles (tools/make_trees_data.py; the training
# tiles come from three photographs, the validation tiles from a fourth). Trained by
# mutual learning from scratch on a CPU; the RetinaNet R50-FPN recipe
# (retinanet_mutual_r50.py) scaled down, the overrides commented.
_base_ = '../retinanet_mutual_r50.py'

data_root = 'data/trees/'
classes = ('Tree',)
image_size = 400

norm_cfg = dict(type='BN', requires_grad=True)
# Crown boxes measured by `python tools/make_trees_data.py` (training tiles, kept boxes):
# sqrt(area) 8 px (min), 15 (5th percentile), 39 (median), 71 (95th), 106 (max); height /
# width 0.75 (5th) to 1.43 (95th). At the grid's smallest scale (0.5) they are 4-53 px.
# Anchors: P3-P5 only (strides 8, 16, 32; P6/P7 anchors of 256+ px would match nothing),
# 2 * stride at 3 scales per octave: 16-25 px on P3, 32-50 on P4, 64-102 on P5, with
# ratios spanning the measured 5th-95th percentile of height / width.
model = dict(
    backbone=dict(depth=18, base_channels=32, stem_channels=32, norm_cfg=norm_cfg,
                  init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, start_level=1,
              add_extra_convs=False, num_outs=3, slim_outputs=True),
    bbox_head=dict(
        num_classes=len(classes), in_channels=64, feat_channels=64, stacked_convs=2,
        anchor_generator=dict(octave_base_scale=2, scales_per_octave=3,
                              ratios=[0.75, 1.0, 1.33], strides=[8, 16, 32])),
    # Anchors mostly inside an ignored region (a crown piece under min_visible at a tile
    # border, iscrowd in the annotation file) are neither positive nor negative.
    train_cfg=dict(assigner=dict(ignore_iof_thr=0.5)),
    # Dense scenes: up to 61 kept crowns in a training tile and 49 in a validation tile;
    # 200 detections per tile, crowns overlap little (NMS IoU 0.4).
    test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(iou_threshold=0.4),
                  max_per_img=200))

# Seen from above a crown has no orientation: flips in both directions and transposes.
# The test Resize keeps the 400 px tiles; it is what an exported configuration scales.
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
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
# Tiles without a crown are kept (filter_empty_gt=False): bare ground and shadows are the
# negatives of this task.
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    batch_sampler=None,
    dataset=dict(**_dataset, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=False),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(**_dataset, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
# AP over up to 200 detections per tile (the stock evaluator stops at 100 for AR@100
# but takes its mAP at the last of proposal_nums).
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json',
                     proposal_nums=(10, 100, 200))
test_evaluator = val_evaluator

# Short schedule, AdamW (from scratch), validation at the end. The full network trains
# alone for the first half of the schedule, then with the cohort, as in the other demos.
max_epochs = 36
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
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=2e-5),
]
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

# Seeded, so that the documented figures can be reproduced (`--cfg-options
# randomness.seed=N` draws another run).
randomness = dict(seed=0)
