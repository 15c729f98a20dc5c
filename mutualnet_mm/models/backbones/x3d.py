"""Slimmable X3D for mmaction2: stock ``X3D`` at full width, narrower ones below.

At width ``w`` the network is mmaction2's ``X3D`` with ``gamma_w * w`` as its width
factor. X3D derives every channel count from one base width, ``_round_width(24, gamma_w)``
(the same rounding as :func:`~mutualnet_mm.ops.make_divisible`): stage ``i`` has
``base * 2**i`` channels, its bottlenecks ``int(base * 2**i * gamma_b)``, the squeeze-and-
excitation units ``_round_width(bottleneck, se_ratio)`` and ``conv5``
``int(8 * base * gamma_b)``. Reading the channel plan off the stock module keeps all of
them, SE included, exactly as the stock network at that width has them.

Because only the base width moves, in steps of 8 channels, X3D-XS/S/M/L (``gamma_w=1``,
base 24) have three distinct widths: base 8 up to ``w = 0.370``, base 16 up to
``w = 0.740`` and base 24 above (so ``w = 0.75`` is the full network). No width in the
default range ``(0.25, 1.0)`` is invalid; widths in one step give the same network, and
:meth:`SlimmableX3D.stock_config` names it by its base (``gamma_w = base / 24``), so that
they share one config and one cached channel plan.
"""
from typing import Sequence

from mmaction.models.backbones import X3D
from mmaction.registry import MODELS

from ...ops import convert_to_slimmable
from ..stock import StockSlimmable, drop_in_signature, stock_arguments

_NOT_FORWARDED = ('init_cfg', 'pretrained')
_STOCK_BASE_CHANNELS = 24  # X3D's base width before gamma_w


@MODELS.register_module()
@drop_in_signature(X3D)
class SlimmableX3D(StockSlimmable, X3D):
    """mmaction2 ``X3D`` whose width can be set at run time.

    Args:
        *args, **kwargs: mmaction2 ``X3D`` arguments, in its order (``gamma_w``: width
            factor of the full network, X3D-XS/S/M/L: 1.0; ``gamma_b``, ``gamma_d``,
            ``se_ratio``, ``norm_cfg``, ``frozen_stages``, ...).
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``.
    """

    stock_scope = 'mmaction'

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(X3D, args, kwargs)
        gamma_w = kwargs.get('gamma_w', 1.0)
        if not gamma_w or gamma_w <= 0:
            raise ValueError(f'SlimmableX3D gamma_w must be a positive number, got {gamma_w!r}')
        super().__init__(**kwargs)
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items()
                              if k not in _NOT_FORWARDED and k != 'gamma_w'}
        convert_to_slimmable(self)
        self.conv1_s.conv.slim_in = False  # the colour channels

    def stock_config(self, width: float) -> dict:
        base = self._round_width(_STOCK_BASE_CHANNELS, self.gamma_w * width)
        return dict(type='X3D', **self._stock_kwargs, gamma_w=base / _STOCK_BASE_CHANNELS)
