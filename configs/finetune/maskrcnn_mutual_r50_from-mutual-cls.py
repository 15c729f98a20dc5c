# Mask R-CNN R50-FPN fine-tuned from a ResNet-50 pretrained here by mutual learning on
# ImageNet over the widths this detector slims over, [0.25, 1.0]
# (configs/classification/resnet50_mutual_in1k.py). The classifier's checkpoint loads as
# it is: its backbone tensors carry mmdet's ResNet names.
_base_ = '../maskrcnn_mutual_r50.py'

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='work_dirs/resnet50_mutual_in1k/epoch_120.pth')))
