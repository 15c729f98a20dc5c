"""Slimmable SlowFast for mmaction2: stock ``ResNet3dSlowFast`` at every width.

At width ``w`` the slow and fast pathways have ``scale_channels(base_channels, w)`` base
channels, and the stock network at that width gets ``channel_ratio = slow / fast``: the
stock class sizes each lateral connection from the slow width divided by
``channel_ratio``, which must equal the fast width it actually receives. With the usual
fast base of 8 channels the fast pathway (and so every lateral connection) keeps its full
width, since the channel rule never goes below 8; the slow pathway carries the slimming.
A width at which the slow base is no multiple of the fast one has no stock counterpart
and is rejected.

The first block of each slow stage after a lateral connection eats
``cat(slow, lateral)``. At a width both parts keep a prefix of their channels, so the
active inputs are no prefix of the full ones: a
:class:`~mutualnet_mm.ops.segments.SegmentedConv3d` gathers the weight columns part by part.
"""
import copy
import inspect
from typing import Dict, Sequence, Tuple

from mmaction.models.backbones import ResNet3dSlowFast
from mmaction.models.backbones.resnet3d import Bottleneck3d
from mmaction.registry import MODELS

from ...ops import convert_to_slimmable, scale_channels
from ...ops.segments import SegmentedConv3d
from ..stock import StockSlimmable, drop_in_signature, stock_arguments

_NOT_FORWARDED = ('init_cfg', 'pretrained')


def _stock_defaults() -> dict:
    """Fresh copies of the default arguments of the stock ``ResNet3dSlowFast``."""
    parameters = inspect.signature(ResNet3dSlowFast.__init__).parameters
    return {name: copy.deepcopy(p.default) for name, p in parameters.items()
            if p.default is not inspect.Parameter.empty}


@MODELS.register_module()
@drop_in_signature(ResNet3dSlowFast)
class SlimmableResNet3dSlowFast(StockSlimmable, ResNet3dSlowFast):
    """mmaction2 ``ResNet3dSlowFast`` whose width can be set at run time.

    Args:
        *args, **kwargs: mmaction2 ``ResNet3dSlowFast`` arguments, in its order
            (``pretrained``, ``resample_rate``, ``speed_ratio``, ``channel_ratio``,
            ``slow_pathway``, ``fast_pathway``, ``init_cfg``). Lateral connections must
            be convolutions (``lateral_inv=False``).
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``:
            at 0.25 the slow pathway of SlowFast-R50 has 16 base channels.
    """

    stock_scope = 'mmaction'

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(ResNet3dSlowFast, args, kwargs)
        config = {**_stock_defaults(), **copy.deepcopy(kwargs)}
        for key in ('slow_pathway', 'fast_pathway'):
            pathway = config[key] = dict(config[key])
            if pathway.get('lateral_inv'):
                raise ValueError(f'SlimmableResNet3dSlowFast: {key} has lateral_inv=True; '
                                 'transposed-conv lateral connections are not slimmable')
        super().__init__(**copy.deepcopy(config))
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in config.items() if k not in _NOT_FORWARDED}
        slow_base, fast_base = self.slow_path.base_channels, self.fast_path.base_channels
        if self.slow_path.lateral and slow_base != fast_base * self.channel_ratio:
            raise ValueError(f'SlimmableResNet3dSlowFast: the slow pathway has {slow_base} '
                             f'base channels, the fast one {fast_base}; with lateral '
                             f'connections slow must be fast * channel_ratio '
                             f'({self.channel_ratio})')
        convert_to_slimmable(self)
        self.slow_path.conv1.conv.slim_in = False  # the colour channels
        self.fast_path.conv1.conv.slim_in = False
        self._concat_sources = self._make_concat_convs()

    def _make_concat_convs(self) -> Dict[str, Tuple[str, str]]:
        """Swap the convs that eat ``cat(slow, lateral)`` for concat-aware ones.

        Returns:
            For each swapped conv (name relative to this module), the names of the layers
            whose outputs form its two input parts: the slow features and the lateral one.
        """
        slow = self.slow_path
        sources = {}
        for i, layer_name in enumerate(slow.res_layers):
            lateral_channels = slow.lateral_inplanes[i]
            if not lateral_channels:
                continue
            if i == 0:
                slow_source, lateral_source = 'conv1', 'conv1_lateral'
            else:
                previous = f'layer{i}'
                last = len(getattr(slow, previous)) - 1
                last_conv = 'conv3' if slow.block is Bottleneck3d else 'conv2'
                slow_source = f'{previous}.{last}.{last_conv}'
                lateral_source = f'{previous}_lateral'
            first_block = getattr(slow, layer_name)[0]
            for owner_name in ('conv1', 'downsample'):
                owner = getattr(first_block, owner_name)
                if owner is None:
                    continue
                full = owner.conv.in_channels
                owner.conv = SegmentedConv3d.from_conv(
                    owner.conv, (full - lateral_channels, lateral_channels))
                name = f'slow_path.{layer_name}.0.{owner_name}.conv'
                sources[name] = (f'slow_path.{slow_source}.conv',
                                 f'slow_path.{lateral_source}.conv')
        return sources

    def set_width(self, width: float) -> None:
        super().set_width(width)
        plan = self.channel_plan(self.width)
        for name, (slow_source, lateral_source) in self._concat_sources.items():
            self.get_submodule(name).set_active_in_segments(
                (plan[slow_source], plan[lateral_source]))

    def stock_config(self, width: float) -> dict:
        slow = scale_channels(self.slow_path.base_channels, width)
        fast = scale_channels(self.fast_path.base_channels, width)
        config = copy.deepcopy(self._stock_kwargs)
        config['slow_pathway']['base_channels'] = slow
        config['fast_pathway']['base_channels'] = fast
        if self.slow_path.lateral:
            if slow % fast:
                raise ValueError(f'SlimmableResNet3dSlowFast at width {width:g}: the slow '
                                 f'pathway has {slow} base channels, the fast one {fast}; '
                                 'no stock ResNet3dSlowFast has a fractional channel_ratio. '
                                 'Narrow width_range or use fast base_channels 8')
            config['channel_ratio'] = slow // fast
        return dict(type='ResNet3dSlowFast', **config)
