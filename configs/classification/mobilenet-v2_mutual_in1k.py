# MutualNet MobileNetV2, widths [0.7, 1.0] (apps/mobilenet_v2.yml), on ImageNet-1k.
_base_ = [
    'mmpretrain::_base_/models/mobilenet_v2_1x.py',
    '../_base_/mutual_cls_in1k_mobile.py',
]

# The last 1x1 conv keeps its 1280 channels at every width, so the head does too.
model = dict(
    backbone=dict(type='SlimmableMobileNetV2', width_range=(0.7, 1.0)),
    head=dict(type='SlimmableLinearClsHead'))

# The widths of the reference's published query table, with 0.95 and 0.9 (0.9 is also in
# apps/mobilenet_v2.yml's evaluation widths, width_mult_list [0.7, 0.9, 1.0]).
_grid = dict(widths=(1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7))
val_cfg = dict(**_grid)
test_cfg = dict(**_grid)
