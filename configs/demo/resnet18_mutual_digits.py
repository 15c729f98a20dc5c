# A half-width SlimmableResNet-18 on scikit-learn's handwritten digits: real 8x8 scans
# upscaled to 32 px (tools/make_digits_data.py; 1438 training, 359 validation images),
# trained by mutual learning on a CPU in minutes. The ResNet-18 ImageNet recipe
# (resnet18_mutual_in1k.py) scaled down; the overrides are commented.
_base_ = '../classification/resnet18_mutual_in1k.py'

data_root = 'data/digits'
num_classes = 10
image_size = 32

# Half width (base 32 channels; 8 at width 0.25), 10 classes.
data_preprocessor = dict(num_classes=num_classes, mean=[127.5] * 3, std=[127.5] * 3)
model = dict(
    backbone=dict(base_channels=32, stem_channels=32),
    head=dict(num_classes=num_classes, in_channels=256))

# Digits: no flips, no colour changes; shifts of up to 2 pixels. The test Resize keeps
# the 32 px; it is what an exported configuration scales to its resolution.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=image_size, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size)),
    dict(type='PackInputs'),
]
_dataset = dict(type='CustomDataset', data_root=data_root)
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **_dataset, data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **_dataset, data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader

# 30 epochs; LR 0.1 at batch 64 (one GPU, from scratch). Resolutions resized with
# align_corners=False (the recipe, like the reference: True), which is closer to what the
# Resize of an exported configuration's pipeline computes.
max_epochs = 30
_rescaler = dict(type='ClsBatchRescaler', align_corners=False)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs,
                 mutual=dict(rescaler=_rescaler))
optim_wrapper = dict(optimizer=dict(lr=0.1))
param_scheduler = dict(T_max=max_epochs)
auto_scale_lr = dict(base_batch_size=64)

# The grid at 32, 27, 23 and 18 px (the recipe's scales: 224/192/160/128 of 224).
_grid = dict(widths=(1.0, 0.75, 0.5, 0.25), rescaler=_rescaler)
val_cfg = dict(**_grid)
test_cfg = dict(**_grid)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

# Seeded, so that the documented figures can be reproduced (`--cfg-options
# randomness.seed=N` draws another run).
randomness = dict(seed=0)
