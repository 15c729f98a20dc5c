# MutualNet's ImageNet recipe on mmpretrain's ImageNet settings: mutual learning, then
# per-configuration evaluation. Sources: taoyang1122/MutualNet train.py (the step, the
# optimizer, the LR schedule), utils/datasets.py (augmentation) and apps/resnet50.yml
# (numbers); shared/docs/mutualnet.md section 3. These are the ResNet settings;
# mutual_cls_in1k_mobile.py has the MobileNets' (apps/mobilenet_v*.yml). A recipe sets
# the model and the widths to evaluate.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mutualnet_mm'], allow_failed_imports=False)

# Augmentation (utils/datasets.py, 'imagenet1k_basic'): RandomResizedCrop to 224 (crop
# area from 0.08), ColorJitter 0.4, Lighting 0.1, flip. The sub-networks' resolutions are
# the same crop downsampled (ClsBatchRescaler).
# Lighting: the reference's ImageNet PCA (utils/transforms.py), eigenvalues on the 0-1
# scale, applied as there to the 0-255 uint8 image: a shift of about 0.01 grey levels,
# which the cast back to uint8 turns into 0 or -1 per channel. mmpretrain's configs use
# 255 times these eigenvalues (shifts of about 3 levels, wrapping around at 0 and 255).
# Eigenvector rows in BGR order (the images are BGR; to_rgb=False).
_eigval = [0.2175, 0.0188, 0.0045]
_eigvec = [[-0.5836, -0.6948, 0.4203], [-0.5808, -0.0045, -0.8140],
           [-0.5675, 0.7192, 0.4009]]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0)),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='Lighting', eigval=_eigval, eigvec=_eigvec, alphastd=0.1, to_rgb=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))  # x 8 GPUs: 512

# Each iteration (train.py): the full network at 224 on the labels, then 2 random widths
# and the smallest, each at a resolution drawn from {224, 192, 160, 128}, learning the KL
# divergence to the full network's detached logits (no label loss); one optimizer step.
# Resolutions: the crop, bilinearly resized with align_corners=True (utils/transforms.py
# InputList, and train.py's test), in training and evaluation alike.
resolutions = (224, 192, 160, 128)
_rescaler = dict(type='ClsBatchRescaler', align_corners=True)
max_epochs = 120
# Checkpoints written atomically, the old one removed only after the new one is complete;
# SIGTERM saves and stops (mutualnet_mm/reliability/checkpoint_hook.py).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
train_cfg = dict(
    type='MutualEpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_interval=max_epochs,  # the per-configuration grid once, at the end
    mutual=dict(
        num_subnets=4,
        scales=tuple(r / resolutions[0] for r in resolutions),
        rescaler=_rescaler,
        distill=dict(type='LogitDistiller', module='head', label_loss=False)))

# SGD with Nesterov momentum 0.9, weight decay 1e-4 on conv (not depthwise) and linear
# weights only; LR 0.2 at batch 512, cosine to 0 per iteration, no warm-up.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, dwconv_decay_mult=0.0))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=max_epochs,
                       convert_to_iter_based=True)
auto_scale_lr = dict(base_batch_size=512)

# Each (width, resolution): BN statistics recalibrated on 9 training batches per GPU
# (the reference: 9 batches of its full batch), then top-1/top-5; the query table by top-1.
_grid = dict(
    widths=(1.0, 0.25),  # set by each recipe
    scales=tuple(r / resolutions[0] for r in resolutions),
    calibration=dict(num_batches=9),
    rescaler=_rescaler,
    metric='accuracy/top1')
val_cfg = dict(type='PerConfigValLoop', **_grid)
test_cfg = dict(type='PerConfigTestLoop', **_grid)
