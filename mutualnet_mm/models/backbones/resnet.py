"""Slimmable ResNet: stock ``ResNet`` at full width, narrower ones below.

At width ``w`` the network is the stock ``ResNet`` (mmdet's; mmpretrain's for its twin in
:mod:`..classification`) with
``base_channels = stem_channels = make_divisible(64 * w, 8)``; every stage doubles the
base as in the stock network, so each width is exactly expressible as a stock ResNet
(and exportable as one). Per-stage rounding would give finer steps in deep stages but
widths no stock ResNet can express (e.g. 20, 38, ... middle channels at 0.3).
"""
import copy
from typing import List, Sequence

from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS

from ...ops import convert_to_slimmable, scale_channels
from .. import dcn  # noqa: F401  (registers the slimmable deformable convolutions)
from ..stock import StockSlimmable, drop_in_signature, stock_arguments

# Arguments the twin does not take as given: weights, and the widths set per width.
_NOT_FORWARDED = ('init_cfg', 'pretrained', 'base_channels', 'stem_channels')
#: Plugin types that compute their stock twin at every width (no weights, no channel
#: counts of their own).
SLIMMABLE_PLUGINS = ('DropBlock',)


class InvalidDepthError(KeyError, ValueError):
    """A depth the stock ``ResNet`` has no settings for (a ``KeyError``, as it raises)."""

    def __str__(self) -> str:
        return str(self.args[0])


class ResNetFamily(StockSlimmable):
    """A stock ``ResNet`` (the class's ``stock_class``) whose width can be set at run time.

    Plugins (mmdet's) of the types in :data:`SLIMMABLE_PLUGINS` slim; with any other
    plugin (they carry weights or channel counts of their own: ``ContextBlock``,
    ``GeneralizedAttention``, ``NonLocal2d``, ...) the network runs at full width only
    and :meth:`set_width` refuses narrower widths, naming the plugin.

    Args:
        *args, **kwargs: The stock ``ResNet``'s arguments, in its order (``depth``,
            ``in_channels``, ``stem_channels``, ``base_channels``, ...).
        width_range: Smallest and largest width multiplier. Default ``(0.25, 1.0)``:
            at 0.25 the base has 16 channels, a quarter of the full network's.

    Raises:
        InvalidDepthError: ``depth`` is not one of the stock depths.
    """

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        kwargs = stock_arguments(self.stock_class, args, kwargs)
        depth = kwargs['depth']
        if depth not in self.arch_settings:
            raise InvalidDepthError(f'SlimmableResNet depth must be one of '
                                    f'{sorted(self.arch_settings)}, got {depth!r}')
        # copies: the stock blocks pop keys of dcn (and whoever passed it may build again)
        kwargs = copy.deepcopy(kwargs)
        super().__init__(**copy.deepcopy(kwargs))
        self.init_width_range(width_range)
        self._stock_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        convert_to_slimmable(self)
        first_conv = self.stem[0] if self.deep_stem else self.conv1
        # the colour channels (mmpretrain's deep stem wraps the conv in a ConvModule)
        getattr(first_conv, 'conv', first_conv).slim_in = False
        self.fixed_plugins = self._find_fixed_plugins()

    def _find_fixed_plugins(self) -> List[str]:
        """Names of the plugin layers that do not slim (see :data:`SLIMMABLE_PLUGINS`)."""
        fixed = []
        for layer_name in self.res_layers:
            for index, block in enumerate(getattr(self, layer_name)):
                names = [name for position in ('after_conv1', 'after_conv2', 'after_conv3')
                         for name in getattr(block, f'{position}_plugin_names', ())]
                fixed += [f'{layer_name}.{index}.{name} ({type(getattr(block, name)).__name__})'
                          for name in names
                          if type(getattr(block, name)).__name__ not in SLIMMABLE_PLUGINS]
        return fixed

    def set_width(self, width: float) -> None:
        """Run at ``width``; refused below the full network when a plugin cannot slim."""
        narrower = self.stock_config(width)['base_channels'] != self.base_channels
        if narrower and self.fixed_plugins:
            raise ValueError(f'SlimmableResNet cannot run at width {width:g}: plugin '
                             f'{self.fixed_plugins[0]} does not slim (slimmable plugins: '
                             f'{SLIMMABLE_PLUGINS}); with it only the full network runs')
        super().set_width(width)

    def stock_config(self, width: float) -> dict:
        return dict(type='ResNet', **self._stock_kwargs,
                    base_channels=scale_channels(self.base_channels, width),
                    stem_channels=scale_channels(self.stem_channels, width))


@MODELS.register_module()
@drop_in_signature(ResNet)
class SlimmableResNet(ResNetFamily, ResNet):
    """mmdet ``ResNet`` whose width can be set at run time (see :class:`ResNetFamily`).

    DCN stages (``dcn=dict(type='DCN')`` or ``'DCNv2'``) slim like convolutions.
    """
