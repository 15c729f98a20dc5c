# MutualNet MobileNetV1, widths [0.25, 1.0] (apps/mobilenet_v1.yml), on ImageNet-1k.
_base_ = [
    'mmpretrain::_base_/models/mobilenet_v2_1x.py',
    '../_base_/mutual_cls_in1k_mobile.py',
]

model = dict(
    backbone=dict(_delete_=True, type='SlimmableMobileNetV1', width_range=(0.25, 1.0),
                  out_indices=(3, )),
    head=dict(type='SlimmableLinearClsHead', in_channels=1024))

# The widths of the reference's published query table.
_grid = dict(widths=(1.0, 0.85, 0.7, 0.5, 0.35, 0.25))
val_cfg = dict(**_grid)
test_cfg = dict(**_grid)
