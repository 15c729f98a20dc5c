# SlowFast-R50 4x16 on Kinetics-400: mmaction2's recipe, one set of weights for every
# (width, spatial scale). The slow pathway slims; the fast one (8 base channels) and the
# lateral connections keep their width (see
# mutualnet_mm/models/backbones/resnet3d_slowfast.py).
_base_ = 'mmaction::recognition/slowfast/slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb.py'

custom_imports = dict(imports=['mutualnet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='SlimmableResNet3dSlowFast', width_range=(0.25, 1.0)),
    cls_head=dict(type='SlimmableSlowFastHead'))

# Every iteration: the full network, 2 random widths and the smallest one, each on the
# batch at a random spatial scale; sub-networks learn from the full network's logits.
max_epochs = 256
train_cfg = dict(
    _delete_=True,
    type='MutualEpochBasedTrainLoop', max_epochs=max_epochs, val_begin=1, val_interval=16,
    mutual=dict(num_subnets=4, scales=(1.0, 0.875, 0.75, 0.625),
                rescaler=dict(type='VideoBatchRescaler'),
                distill=dict(type='LogitDistiller', module='cls_head',
                             temperature=1.0, weight=1.0)))
_grid = dict(widths=(1.0, 0.75, 0.5, 0.25), scales=(1.0, 0.75),
             calibration=dict(num_batches=4))
val_cfg = dict(_delete_=True, type='PerConfigValLoop', **_grid)
test_cfg = dict(_delete_=True, type='PerConfigTestLoop', **_grid)

# Checkpoints written atomically, the old one removed only after the new one is complete;
# SIGTERM saves and stops (mutualnet_mm/reliability/checkpoint_hook.py).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
