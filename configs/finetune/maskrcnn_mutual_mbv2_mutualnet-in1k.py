# Mask R-CNN MobileNetV2 fine-tuned from the authors' ImageNet MutualNet weights.
# Convert them first:
#   python tools/convert_mutualnet_ckpt.py mbv2_mutualnet.pt checkpoints/mbv2_mutualnet_mmdet.pth
_base_ = '../maskrcnn_mutual_mbv2.py'

model = dict(
    backbone=dict(
        # The ImageNet model was trained over widths [0.7, 1.0]; narrower ones start from
        # its prefix slices and are learned here.
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/mbv2_mutualnet_mmdet.pth')))
