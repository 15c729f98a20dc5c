"""Slimmable backbones, registered in mmdet's (2D) and mmaction2's (3D) MODELS."""
from .cspnext import SlimmableCSPNeXt
from .mobilenet_v1 import MobileNetV1, SlimmableMobileNetV1
from .mobilenet_v2 import SlimmableMobileNetV2
from .resnet import SlimmableResNet
from .resnet3d_slowfast import SlimmableResNet3dSlowFast
from .x3d import SlimmableX3D

__all__ = ['MobileNetV1', 'SlimmableCSPNeXt', 'SlimmableMobileNetV1', 'SlimmableMobileNetV2',
           'SlimmableResNet', 'SlimmableResNet3dSlowFast', 'SlimmableX3D']
