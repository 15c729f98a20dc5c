# Mask R-CNN with a MobileNetV2 backbone on COCO (1x), every (width, scale).
_base_ = './maskrcnn_mutual_r50.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SlimmableMobileNetV2',
        width_range=(0.35, 1.0),
        out_indices=(1, 2, 4, 7),  # strides 4, 8, 16, 32
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[24, 32, 96, 1280]))

val_cfg = dict(widths=(1.0, 0.75, 0.5, 0.35))
test_cfg = dict(widths=(1.0, 0.75, 0.5, 0.35))
