# MutualNet MobileNetV2 over a wider range, [0.35, 1.0] (0.35 is the smallest stock
# MobileNetV2 multiplier; the reference trained [0.7, 1.0]), otherwise as
# mobilenet-v2_mutual_in1k.py: a backbone for detectors slimmed to 0.35.
_base_ = './mobilenet-v2_mutual_in1k.py'

model = dict(backbone=dict(width_range=(0.35, 1.0)))

_grid = dict(widths=(1.0, 0.85, 0.7, 0.5, 0.35))
val_cfg = dict(**_grid)
test_cfg = dict(**_grid)
