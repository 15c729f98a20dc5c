# RTMDet-Ins-l on COCO instance segmentation, one set of weights for the whole RTMDet-Ins
# family: at width and depth (0.375, 0.167), (0.5, 0.33), (0.75, 0.67) and (1, 1) the
# network is mmdet's own RTMDet-Ins-tiny, -s, -m and -l (tools/export_subnet.py --width W
# --depth D). mmdet's recipe otherwise; the mutual settings are rtmdet_l_mutual_coco.py's.
_base_ = 'mmdet::rtmdet/rtmdet-ins_l_8xb32-300e_coco.py'

custom_imports = dict(imports=['mutualnet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='SlimmableCSPNeXt'),  # widths [0.375, 1], depths [0.167, 1]
    neck=dict(type='SlimmableCSPNeXtPAFPN'),
    bbox_head=dict(type='SlimmableRTMDetInsSepBNHead'))

# Every iteration: the full network, 2 random (width, depth) pairs and the smallest, each
# on the whole batch rescaled to a random scale (boxes and masks follow).
train_cfg = dict(
    type='MutualEpochBasedTrainLoop',
    mutual=dict(
        num_subnets=4,
        scales=(1.0, 0.875, 0.75, 0.625, 0.5),
        rescaler=dict(type='DetBatchRescaler', size_divisor=32, pad_value=0.0),
        distill=None))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

# The grid crosses widths and depths: the four family points are among its 16 pairs.
_grid = dict(
    widths=(1.0, 0.75, 0.5, 0.375),
    depths=(1.0, 0.67, 0.33, 0.167),
    scales=(1.0, 0.75, 0.5),
    calibration=dict(num_batches=8))
val_cfg = dict(type='PerConfigValLoop', **_grid)
test_cfg = dict(type='PerConfigTestLoop', **_grid)

default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
