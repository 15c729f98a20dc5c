# MutualNet ResNet-18 over widths [0.25, 1.0], on ImageNet-1k. The reference has no
# ResNet-18 recipe: its ResNet-50 one (apps/resnet50.yml) is used unchanged.
_base_ = './resnet50_mutual_in1k.py'

model = dict(backbone=dict(depth=18), head=dict(in_channels=512))
