"""Slimmable necks, registered in mmdet's MODELS."""
from .fpn import SlimmableFPN

__all__ = ['SlimmableFPN']
