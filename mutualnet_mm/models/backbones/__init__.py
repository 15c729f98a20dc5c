"""Slimmable backbones, registered in mmdet's (2D) and mmaction2's (3D) MODELS."""
from .resnet import SlimmableResNet

__all__ = ['SlimmableResNet']
