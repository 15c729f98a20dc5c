"""Slimmable FPN for mmdet: stock ``FPN`` at full width, narrower ones below.

The lateral convolutions take whatever channels the backbone delivers at its active width.
Whether the pyramid's own channels follow the width is a choice: ``slim_outputs=False``
(the reference work's detectors: only the backbone slims) keeps ``out_channels`` at every
width; ``slim_outputs=True`` (the whole detector slims) runs
``scale_channels(out_channels, w)`` of them.
"""
from typing import Optional, Sequence

from mmdet.models.necks import FPN
from mmdet.registry import MODELS

from ...ops import convert_to_slimmable, scale_channels
from ..norm_check import check_slimmable_norm
from ..stock import StockSlimmable, drop_in_signature, stock_arguments


@MODELS.register_module()
@drop_in_signature(FPN)
class SlimmableFPN(StockSlimmable, FPN):
    """mmdet ``FPN`` whose inputs (and optionally outputs) follow the active width.

    Takes mmdet ``FPN``'s arguments, positional ones included, and two keyword-only ones.

    Args:
        *args, **kwargs: mmdet ``FPN`` arguments: ``in_channels`` (full-width input
            channels per scale: the backbone's at width 1.0), ``out_channels`` (full
            width), ``num_outs``, ``start_level``, ... Norms, where they slim, must be
            batch norms.
        slim_outputs: Whether the output channels follow the width
            (``scale_channels(out_channels, w)``) or stay ``out_channels``.
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``.
    """

    def __init__(self, *args, slim_outputs: bool = False,
                 width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(FPN, args, kwargs)
        if slim_outputs:
            check_slimmable_norm(kwargs.get('norm_cfg'), type(self).__name__)
        super().__init__(**kwargs)
        self.slim_outputs = slim_outputs
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items()
                              if k not in ('init_cfg', 'in_channels', 'out_channels')}
        convert_to_slimmable(self)

    def stock_config(self, width: float, in_channels: Optional[Sequence[int]] = None) -> dict:
        """Config of the stock ``FPN`` computing this one at ``width``.

        Args:
            width: The width multiplier.
            in_channels: The channels the backbone delivers at ``width`` (they depend on
                the backbone's own rounding). Default: the full-width ones, enough for
                the channel plan, which only needs the output counts.
        """
        out_channels = self.out_channels
        if self.slim_outputs:
            out_channels = scale_channels(out_channels, width)
        in_channels = list(self.in_channels if in_channels is None else in_channels)
        if len(in_channels) != len(self.in_channels):
            raise ValueError(f'in_channels must list {len(self.in_channels)} scales, '
                             f'got {in_channels}')
        return dict(type='FPN', **self._stock_kwargs, in_channels=in_channels,
                    out_channels=out_channels)
