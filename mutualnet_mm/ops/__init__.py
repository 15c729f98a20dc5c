"""Slimmable layers, the channel rule and the width contract (no OpenMMLab imports)."""
from .fusion import SLIMMABLE_FUSER_METHODS
from .layers import (
                     SlimmableBatchNorm2d,
                     SlimmableBatchNorm3d,
                     SlimmableConv2d,
                     SlimmableConv3d,
                     SlimmableConvNd,
                     SlimmableConvTranspose2d,
                     SlimmableLayer,
                     SlimmableLinear,
                     SlimmableSyncBatchNorm,
                     convert_to_slimmable,
                     discard_kept_slices,
                     register_slimmable_twin,
                     reset_bn_statistics,
                     to_slimmable_layer,
)
from .slimmable import (
                     Slimmable,
                     WidthSnapshot,
                     depth_range_of,
                     get_depth,
                     get_width,
                     get_widths,
                     has_depth,
                     is_backbone,
                     iter_slimmable_layers,
                     part_width,
                     set_width,
                     slice_state_dict,
                     slimmable_modules,
                     width_range_of,
)
from .width import (
    CHANNEL_DIVISOR,
    check_width,
    check_width_range,
    make_divisible,
    scale_channels,
    widen_channels,
)

__all__ = [
    'CHANNEL_DIVISOR', 'SLIMMABLE_FUSER_METHODS', 'Slimmable', 'SlimmableBatchNorm2d',
    'SlimmableBatchNorm3d', 'SlimmableConv2d', 'SlimmableConv3d', 'SlimmableConvNd',
    'SlimmableConvTranspose2d', 'SlimmableLayer', 'SlimmableLinear',
    'SlimmableSyncBatchNorm', 'WidthSnapshot', 'check_width', 'check_width_range',
    'convert_to_slimmable', 'depth_range_of', 'discard_kept_slices', 'get_depth', 'has_depth',
    'get_width', 'get_widths', 'is_backbone', 'iter_slimmable_layers', 'make_divisible',
    'part_width', 'register_slimmable_twin',
    'reset_bn_statistics',
    'scale_channels', 'set_width', 'slice_state_dict', 'slimmable_modules',
    'to_slimmable_layer', 'widen_channels', 'width_range_of',
]
