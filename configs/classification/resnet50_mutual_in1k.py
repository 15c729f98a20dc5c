# MutualNet ResNet-50 over widths [0.25, 1.0], on ImageNet-1k, with the reference's
# ResNet-50 recipe (apps/resnet50.yml, which trained [0.9, 1.0] only): the adaptive
# backbone the detection configs (e.g. maskrcnn_mutual_r50.py) slim down to 0.25.
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    '../_base_/mutual_cls_in1k.py',
]

model = dict(
    backbone=dict(type='SlimmableResNet', width_range=(0.25, 1.0)),
    head=dict(type='SlimmableLinearClsHead'))

_grid = dict(widths=(1.0, 0.75, 0.5, 0.25))
val_cfg = dict(**_grid)
test_cfg = dict(**_grid)
