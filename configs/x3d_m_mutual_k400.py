# X3D-M on Kinetics-400 (16x5 clips), one set of weights for every (width, spatial scale).
# mmaction2 ships X3D for testing only (converted weights); the training schedule below
# is that of mmaction2's SlowFast Kinetics recipe (8 GPUs x 8 clips, warm-up + cosine)
# with X3D's weight decay (5e-5, none on batch norms).
_base_ = [
    'mmaction::_base_/models/x3d.py',
    'mmaction::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mutualnet_mm'], allow_failed_imports=False)

# gamma_w=1: the widths in [0.25, 1.0] give X3D bases of 8, 16 or 24 channels
# (see mutualnet_mm/models/backbones/x3d.py).
model = dict(
    backbone=dict(type='SlimmableX3D', width_range=(0.25, 1.0)),
    cls_head=dict(type='SlimmableX3DHead'))

dataset_type = 'VideoDataset'
data_root = 'data/kinetics400/videos_train'
data_root_val = 'data/kinetics400/videos_val'
ann_file_train = 'data/kinetics400/kinetics400_train_list_videos.txt'
ann_file_val = 'data/kinetics400/kinetics400_val_list_videos.txt'
ann_file_test = 'data/kinetics400/kinetics400_val_list_videos.txt'

train_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=5, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=5, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
# The stock X3D-M test protocol: 10 clips x 3 crops at 256.
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=5, num_clips=10, target_fps=30,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='ThreeCrop', crop_size=256),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, ann_file=ann_file_train,
                 data_prefix=dict(video=data_root), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, ann_file=ann_file_val,
                 data_prefix=dict(video=data_root_val), pipeline=val_pipeline,
                 test_mode=True))
test_dataloader = dict(
    batch_size=1,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, ann_file=ann_file_test,
                 data_prefix=dict(video=data_root_val), pipeline=test_pipeline,
                 test_mode=True))
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

# Every iteration: the full network, 2 random widths and the smallest one, each on the
# batch at a random spatial scale; sub-networks learn from the full network's logits.
max_epochs = 256
train_cfg = dict(
    type='MutualEpochBasedTrainLoop', max_epochs=max_epochs, val_interval=16,
    mutual=dict(num_subnets=4, scales=(1.0, 0.875, 0.75, 0.625),
                rescaler=dict(type='VideoBatchRescaler'),
                distill=dict(type='LogitDistiller', module='cls_head',
                             temperature=1.0, weight=1.0)))
# Widths 0.75 and 1.0 are the same X3D (base 24), so the grid skips 0.75.
_grid = dict(widths=(1.0, 0.5, 0.25), scales=(1.0, 0.75), calibration=dict(num_batches=4))
val_cfg = dict(type='PerConfigValLoop', **_grid)
test_cfg = dict(type='PerConfigTestLoop', **_grid)

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-5),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=40, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=34,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0, by_epoch=True, begin=0,
         end=max_epochs),
]
# SafeCheckpointHook: see configs/maskrcnn_mutual_r50.py.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', interval=4, max_keep_ckpts=3),
    logger=dict(interval=100))
auto_scale_lr = dict(enable=False, base_batch_size=64)
