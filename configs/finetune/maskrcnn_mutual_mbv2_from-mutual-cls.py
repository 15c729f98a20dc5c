# Mask R-CNN with a MobileNetV2 backbone fine-tuned from a MobileNetV2 pretrained here by
# mutual learning on ImageNet over the widths this detector slims over, [0.35, 1.0]
# (configs/classification/mobilenet-v2_mutual-w0.35_in1k.py). The classifier's checkpoint
# loads as it is (SlimmableMobileNetV2 reads mmpretrain's block layer names).
_base_ = '../maskrcnn_mutual_mbv2.py'

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='work_dirs/mobilenet-v2_mutual-w0.35_in1k/epoch_250.pth')))
