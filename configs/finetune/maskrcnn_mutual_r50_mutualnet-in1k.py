# Mask R-CNN R50-FPN fine-tuned from the authors' ImageNet MutualNet ResNet-50.
# Convert it first:
#   python tools/convert_mutualnet_ckpt.py r50_mutualnet.pt checkpoints/r50_mutualnet_mmdet.pth
# (torchvision ImageNet weights need no conversion: the base config's
#  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50') loads them.)
_base_ = '../maskrcnn_mutual_r50.py'

model = dict(
    backbone=dict(
        # That checkpoint was trained over widths [0.9, 1.0] (the "boost a single network"
        # model); narrower widths start from its prefix slices and are learned here.
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/r50_mutualnet_mmdet.pth')))
