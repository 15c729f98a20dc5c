"""Registered slimmable models: backbones, necks and heads."""
from . import (
    classification,  # noqa: F401  (registers in mmpretrain's MODELS)
    complexity,  # noqa: F401  (mmcv's FLOPs counter counts slimmable layers)
)
from .backbones import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .stock import StockSlimmable, build_stock, stock_channel_plan

__all__ = ['StockSlimmable', 'build_stock', 'stock_channel_plan']
