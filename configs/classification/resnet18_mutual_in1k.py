# MutualNet ResNet-18 over widths [0.25, 1.0], on ImageNet-1k. The reference has no
# ResNet-18 recipe: its ResNet-50 one (apps/resnet50.yml) is used unchanged.
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    '../_base_/mutual_cls_in1k.py',
]

model = dict(
    backbone=dict(type='SlimmableResNet', width_range=(0.25, 1.0)),
    head=dict(type='SlimmableLinearClsHead'))

_grid = dict(widths=(1.0, 0.75, 0.5, 0.25))
val_cfg = dict(**_grid)
test_cfg = dict(**_grid)
