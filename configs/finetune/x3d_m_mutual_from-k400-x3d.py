# X3D-M adaptive training started from mmaction2's (non-adaptive) Kinetics-400 X3D-M
# weights: download the X3D-M checkpoint listed in mmaction2's X3D model zoo
# (configs/recognition/x3d/README.md there) to the path below. SlimmableX3D has the stock
# X3D names at full width, so it loads without conversion; narrower widths start from
# its prefix slices.
_base_ = '../x3d_m_mutual_k400.py'

load_from = 'checkpoints/x3d_m_kinetics400.pth'

# Fine-tuning: a tenth of the from-scratch learning rate.
optim_wrapper = dict(optimizer=dict(lr=0.01))
