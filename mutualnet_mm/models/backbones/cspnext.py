"""Slimmable CSPNeXt (RTMDet's backbone): the stock family at every width and depth.

mmdet's RTMDet sizes are one ``CSPNeXt`` at several ``(widen_factor, deepen_factor)``:
tiny (0.375, 0.167), s (0.5, 0.33), m (0.75, 0.67), l (1, 1). At width ``w`` and depth
``d`` this backbone is the stock ``CSPNeXt`` built with ``widen_factor * w`` and
``deepen_factor * d``: every layer has the stock ``int(channels * widen)`` channels and
each CSP layer runs its first ``max(round(blocks * deepen), 1)`` blocks, the others kept
under their names. Inputs that concatenate two branches (a CSP layer's main and short
paths, into its channel attention and final conv; the SPP block's poolings) run on the
matching parts of their weights (:mod:`mutualnet_mm.ops.segments`).
"""
from typing import List, Optional, Sequence

from mmdet.models.backbones import CSPNeXt
from mmdet.models.backbones.csp_darknet import SPPBottleneck
from mmdet.models.layers import CSPLayer
from mmdet.registry import MODELS
from torch import nn

from ...ops import check_width, check_width_range, convert_to_slimmable
from ...ops.depth import DepthSequential
from ...ops.segments import SegmentedConv2d
from ..stock import StockSlimmable, drop_in_signature, stock_arguments, stock_module

_NOT_FORWARDED = ('init_cfg', 'widen_factor', 'deepen_factor')
#: RTMDet-tiny's factors: the smallest member of the stock family.
_TINY_WIDEN, _TINY_DEEPEN = 0.375, 0.167


def segment_csp_layers(module: nn.Module) -> List[str]:
    """Give every CSP layer and SPP block in ``module`` segment-aware convs and a
    depth-aware block stage; return the CSP layers' and SPP blocks' names."""
    names = []
    for name, layer in module.named_modules():
        if isinstance(layer, CSPLayer):
            mid = layer.main_conv.conv.out_channels
            layer.final_conv.conv = SegmentedConv2d.from_conv(layer.final_conv.conv, (mid, mid))
            if layer.channel_attention:
                layer.attention.fc = SegmentedConv2d.from_conv(layer.attention.fc, (mid, mid),
                                                               (mid, mid))
            layer.blocks = DepthSequential.from_sequential(layer.blocks)
            names.append(name)
        elif isinstance(layer, SPPBottleneck):
            mid = layer.conv1.conv.out_channels
            layer.conv2.conv = SegmentedConv2d.from_conv(
                layer.conv2.conv, (mid,) * (len(layer.poolings) + 1))
            names.append(name)
    return names


def set_csp_segments(module: nn.Module, names: Sequence[str], stock: nn.Module) -> None:
    """Set the segments and active blocks of the CSP layers and SPP blocks ``names`` of
    ``module`` to those of ``stock``, its stock twin at a width and depth."""
    for name in names:
        layer, twin = module.get_submodule(name), stock.get_submodule(name)
        if isinstance(layer, CSPLayer):
            mid = twin.main_conv.conv.out_channels
            layer.final_conv.conv.set_active_segments(inputs=(mid, mid))
            if layer.channel_attention:
                layer.attention.fc.set_active_segments(inputs=(mid, mid), outputs=(mid, mid))
            layer.blocks.set_active_blocks(len(twin.blocks))
        else:
            mid = twin.conv1.conv.out_channels
            layer.conv2.conv.set_active_segments(inputs=(mid,) * (len(layer.poolings) + 1))


@MODELS.register_module()
@drop_in_signature(CSPNeXt)
class SlimmableCSPNeXt(StockSlimmable, CSPNeXt):
    """mmdet ``CSPNeXt`` whose width and depth can be set at run time.

    Args:
        *args, **kwargs: The stock ``CSPNeXt``'s arguments, in its order (``arch``,
            ``deepen_factor`` and ``widen_factor``: the full network's, ...).
        width_range: Smallest and largest width multiplier. Default: down to
            RTMDet-tiny's widen factor (0.375 of RTMDet-l's), ``(min(1, 0.375 /
            widen_factor), 1)``.
        depth_range: Smallest and largest depth multiplier. Default: down to
            RTMDet-tiny's deepen factor, ``(min(1, 0.167 / deepen_factor), 1)``.
    """

    width_state = ('width', 'depth')

    def __init__(self, *args, width_range: Optional[Sequence[float]] = None,
                 depth_range: Optional[Sequence[float]] = None, **kwargs) -> None:
        kwargs = stock_arguments(CSPNeXt, args, kwargs)
        super().__init__(**kwargs)
        self.widen_factor = kwargs.get('widen_factor', 1.0)
        self.deepen_factor = kwargs.get('deepen_factor', 1.0)
        self.init_width_range(width_range or (min(1.0, _TINY_WIDEN / self.widen_factor), 1.0))
        self.depth_range = check_width_range(
            depth_range or (min(1.0, _TINY_DEEPEN / self.deepen_factor), 1.0),
            type(self).__name__, 'depth')
        self.depth = 1.0
        self._stock_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        convert_to_slimmable(self)
        self.stem[0].conv.slim_in = False  # the colour channels
        self._segmented = segment_csp_layers(self)

    def stock_config(self, width: float, depth: Optional[float] = None) -> dict:
        """The stock ``CSPNeXt`` at ``width`` and ``depth`` (default: the current depth)."""
        depth = self.depth if depth is None else depth
        return dict(type='CSPNeXt', **self._stock_kwargs,
                    widen_factor=self.widen_factor * width,
                    deepen_factor=self.deepen_factor * depth)

    def set_width(self, width: float) -> None:
        super().set_width(width)
        set_csp_segments(self, self._segmented, stock_module(self.stock_config(self.width),
                                                             self.stock_scope))

    def set_depth(self, depth: float) -> None:
        """Run at ``depth``: each CSP layer runs the stock block count at that depth."""
        self.depth = check_width(depth, self.depth_range, type(self).__name__, 'depth')
        self.set_width(self.width)
