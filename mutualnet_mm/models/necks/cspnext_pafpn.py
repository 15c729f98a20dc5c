"""Slimmable CSPNeXtPAFPN (RTMDet's neck): the stock neck of every RTMDet size.

mmdet's RTMDet sizes give the neck the backbone's channels, ``out_channels`` times the
widen factor and ``num_csp_blocks`` times the deepen factor: tiny ``in_channels`` (96,
192, 384), ``out_channels`` 96, 1 block; s (128, 256, 512), 128, 1; m (192, 384, 768),
192, 2; l (256, 512, 1024), 256, 3. At width ``w`` and depth ``d`` this neck is the stock
``CSPNeXtPAFPN`` with every channel count ``int(c * w)`` and
``max(round(num_csp_blocks * d), 1)`` blocks per CSP layer, the others kept under their
names. Its CSP layers eat the concatenation of two pyramid levels, which slim apart
(:mod:`mutualnet_mm.ops.segments`).
"""
from typing import Optional, Sequence

from mmdet.models.layers import CSPLayer
from mmdet.models.necks import CSPNeXtPAFPN
from mmdet.registry import MODELS

from ...ops import check_width, check_width_range, convert_to_slimmable, widen_channels
from ...ops.segments import SegmentedConv2d
from ..backbones.cspnext import segment_csp_layers, set_csp_segments
from ..norm_check import check_slimmable_norm
from ..stock import StockSlimmable, drop_in_signature, stock_arguments, stock_module


@MODELS.register_module()
@drop_in_signature(CSPNeXtPAFPN)
class SlimmableCSPNeXtPAFPN(StockSlimmable, CSPNeXtPAFPN):
    """mmdet ``CSPNeXtPAFPN`` whose channels and depth follow the active configuration.

    Args:
        *args, **kwargs: The stock ``CSPNeXtPAFPN``'s arguments, in its order
            (``in_channels``: the backbone's at full width, ``out_channels``,
            ``num_csp_blocks``: the full network's, ...).
        width_range: Smallest and largest width multiplier. Default ``(0.375, 1.0)``:
            RTMDet-tiny's channels from RTMDet-l's.
        depth_range: Smallest and largest depth multiplier. Default ``(0.167, 1.0)``.
    """

    width_state = ('width', 'depth')

    def __init__(self, *args, width_range: Sequence[float] = (0.375, 1.0),
                 depth_range: Sequence[float] = (0.167, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(CSPNeXtPAFPN, args, kwargs)
        check_slimmable_norm(kwargs.get('norm_cfg'), type(self).__name__)
        super().__init__(**kwargs)
        self.num_csp_blocks = len(self.top_down_blocks[0].blocks)
        self.init_width_range(width_range)
        self.depth_range = check_width_range(depth_range, type(self).__name__, 'depth')
        self.depth = 1.0
        self._stock_kwargs = {k: v for k, v in kwargs.items()
                              if k not in ('init_cfg', 'in_channels', 'out_channels',
                                           'num_csp_blocks')}
        convert_to_slimmable(self)
        self._segmented = segment_csp_layers(self)
        for name in self._segmented:  # main and short convs eat two levels, concatenated
            layer = self.get_submodule(name)
            for branch in (layer.main_conv, layer.short_conv):
                half = branch.conv.in_channels // 2
                branch.conv = SegmentedConv2d.from_conv(branch.conv, (half, half))

    def stock_config(self, width: float, depth: Optional[float] = None) -> dict:
        """The stock ``CSPNeXtPAFPN`` at ``width`` and ``depth`` (default: the current)."""
        depth = self.depth if depth is None else depth
        return dict(type='CSPNeXtPAFPN', **self._stock_kwargs,
                    in_channels=[widen_channels(c, width) for c in self.in_channels],
                    out_channels=widen_channels(self.out_channels, width),
                    num_csp_blocks=max(round(self.num_csp_blocks * depth), 1))

    def set_width(self, width: float) -> None:
        super().set_width(width)
        stock = stock_module(self.stock_config(self.width), self.stock_scope)
        set_csp_segments(self, self._segmented, stock)
        for name in self._segmented:
            twin: CSPLayer = stock.get_submodule(name)
            half = twin.main_conv.conv.in_channels // 2
            layer = self.get_submodule(name)
            for branch in (layer.main_conv, layer.short_conv):
                branch.conv.set_active_segments(inputs=(half, half))

    def set_depth(self, depth: float) -> None:
        """Run at ``depth``: each CSP layer runs the stock block count at that depth."""
        self.depth = check_width(depth, self.depth_range, type(self).__name__, 'depth')
        self.set_width(self.width)
