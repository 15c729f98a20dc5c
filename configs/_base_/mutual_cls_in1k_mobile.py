# The MobileNets' settings of MutualNet's ImageNet recipe (apps/mobilenet_v1.yml,
# apps/mobilenet_v2.yml, utils/datasets.py 'imagenet1k_mobile'): crop area from 0.25,
# batch 1024, LR 0.5, 250 epochs; everything else as in mutual_cls_in1k.py.
_base_ = './mutual_cls_in1k.py'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.25, 1.0)),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='Lighting', eigval={{_base_._eigval}}, eigvec={{_base_._eigvec}}, alphastd=0.1,
         to_rgb=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))  # x 8: 1024

max_epochs = 250
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=0.5))
param_scheduler = dict(T_max=max_epochs)
auto_scale_lr = dict(base_batch_size=1024)
