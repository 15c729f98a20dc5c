"""mmcv's ``get_model_complexity_info`` counts slimmable layers as it counts stock ones.

mmcv looks each layer's counting hook up by exact type, so it skipped every slimmable
layer. Importing this module adds them to mmcv's table, counting the channels a layer
actually runs: at a width, a slimmable network counts the FLOPs of its stock twin.
(mmengine's ``get_model_complexity_info`` traces the operators and needs nothing.)
"""
from types import SimpleNamespace
from typing import Callable, Dict

from mmcv.cnn.utils import flops_counter
from torch import Tensor, nn

from ..ops import (
    SlimmableBatchNorm2d,
    SlimmableBatchNorm3d,
    SlimmableConv2d,
    SlimmableConv3d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
)
from ..ops.fusion import SlimmableConvReLU2d, SlimmableConvReLU3d
from ..ops.segments import SegmentedConv2d, SegmentedConv3d


def _active_view(layer: nn.Module, x: Tensor, y: Tensor) -> SimpleNamespace:
    """The attributes mmcv's conv hooks read, at the channels the layer ran."""
    depthwise = getattr(layer, 'is_depthwise', False)
    return SimpleNamespace(kernel_size=layer.kernel_size, in_channels=x.shape[1],
                           out_channels=y.shape[1],
                           groups=x.shape[1] if depthwise else layer.groups,
                           bias=layer.bias, __flops__=0)


def _counting_active(stock_hook: Callable) -> Callable:
    """``stock_hook`` applied to the active channels of a slimmable conv."""
    def hook(layer: nn.Module, inputs: tuple, output: Tensor) -> None:
        view = _active_view(layer, inputs[0], output)
        stock_hook(view, inputs, output)
        layer.__flops__ += view.__flops__
    return hook


#: Slimmable layer type -> mmcv counting hook.
SLIMMABLE_COUNTERS: Dict[type, Callable] = {
    SlimmableConv2d: _counting_active(flops_counter.conv_flops_counter_hook),
    SlimmableConv3d: _counting_active(flops_counter.conv_flops_counter_hook),
    SegmentedConv2d: _counting_active(flops_counter.conv_flops_counter_hook),
    SegmentedConv3d: _counting_active(flops_counter.conv_flops_counter_hook),
    SlimmableConvReLU2d: _counting_active(flops_counter.conv_flops_counter_hook),  # fused
    SlimmableConvReLU3d: _counting_active(flops_counter.conv_flops_counter_hook),
    SlimmableConvTranspose2d: _counting_active(flops_counter.deconv_flops_counter_hook),
    # these stock hooks read the tensors' shapes only
    SlimmableBatchNorm2d: flops_counter.norm_flops_counter_hook,
    SlimmableBatchNorm3d: flops_counter.norm_flops_counter_hook,
    SlimmableLinear: flops_counter.linear_flops_counter_hook,
}


def _with_slimmable_layers(stock_mapping: Callable[[], Dict]) -> Callable[[], Dict]:
    def modules_mapping() -> Dict:
        return {**stock_mapping(), **SLIMMABLE_COUNTERS}
    modules_mapping.slimmable = True
    return modules_mapping


if not getattr(flops_counter.get_modules_mapping, 'slimmable', False):
    # mmcv reads its table through this module-level function on every lookup.
    flops_counter.get_modules_mapping = _with_slimmable_layers(flops_counter.get_modules_mapping)
