# The demo Mask R-CNN (configs/demo/maskrcnn_mutual_r18_shapes.py) fine-tuned from the
# digits classifier demo (configs/demo/resnet18_mutual_digits.py): the same half-width
# SlimmableResNet-18 over widths [0.25, 1.0], trained first with
#   python tools/train.py configs/demo/resnet18_mutual_digits.py --work-dir work_dirs/digits
# The classifier's checkpoint loads as it is (prefix 'backbone.', set by the demo); the
# rest of the recipe is the demo's.
_base_ = '../demo/maskrcnn_mutual_r18_shapes.py'

model = dict(backbone=dict(init_cfg=dict(checkpoint='work_dirs/digits/epoch_30.pth')))
