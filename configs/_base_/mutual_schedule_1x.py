# mmdet's 1x schedule, trained by mutual learning and evaluated per configuration.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

custom_imports = dict(imports=['mutualnet_mm'], allow_failed_imports=False)

# Every iteration: the full configuration, 2 random widths and the smallest width, each
# sub-network on the whole batch rescaled to a random scale (annotations follow).
train_cfg = dict(
    type='MutualEpochBasedTrainLoop',
    mutual=dict(
        num_subnets=4,
        scales=(1.0, 0.875, 0.75, 0.625, 0.5),
        rescaler=dict(type='DetBatchRescaler', size_divisor=32),
        distill=None))  # or dict(type='FeatureDistiller', module='neck', weight=1.0)

# Each (width, scale) of the grid: BN calibration on training batches, then CocoMetric.
_grid = dict(
    widths=(1.0, 0.75, 0.5, 0.25),
    scales=(1.0, 0.75, 0.5),
    calibration=dict(num_batches=8))
val_cfg = dict(type='PerConfigValLoop', **_grid)
test_cfg = dict(type='PerConfigTestLoop', **_grid)
