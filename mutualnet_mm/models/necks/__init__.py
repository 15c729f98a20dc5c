"""Slimmable necks, registered in mmdet's MODELS."""
from .cspnext_pafpn import SlimmableCSPNeXtPAFPN
from .fpn import SlimmableFPN

__all__ = ['SlimmableCSPNeXtPAFPN', 'SlimmableFPN']
