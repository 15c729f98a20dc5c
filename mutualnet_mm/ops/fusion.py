"""Conv-BN(-ReLU) fusion of slimmable layers for ``torch.ao.quantization.fuse_modules``.

Folding a batch norm into the conv before it scales each output channel on its own, so
it commutes with prefix slicing: the fused slimmable conv computes, at every width,
what the conv and the norm computed. Importing this module registers the fusers with
torch's default fuser table, which ``fuse_modules`` looks layers up in by exact type;
:data:`SLIMMABLE_FUSER_METHODS` holds them for an explicit
``fuse_custom_config_dict={'additional_fuser_method_mapping': ...}``.
"""
from typing import Callable, Dict, Tuple

import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.quantization import fuser_method_mappings
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import SlimmableBatchNorm2d, SlimmableBatchNorm3d, SlimmableConv2d, SlimmableConv3d


class SlimmableConvReLU2d(SlimmableConv2d):
    """A slimmable conv with a ReLU after it: a fused conv, BN and ReLU.

    One layer under the conv's name (torch's ``ConvReLU2d`` nests the conv as ``.0``,
    which would hide it from the channel plan).
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


class SlimmableConvReLU3d(SlimmableConv3d):
    """A slimmable 3D conv with a ReLU after it: a fused conv, BN and ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


_WITH_RELU = {SlimmableConv2d: SlimmableConvReLU2d, SlimmableConv3d: SlimmableConvReLU3d}


def fuse_slimmable_conv_bn(is_qat: bool, conv: nn.Module, bn: nn.Module) -> nn.Module:
    """The slimmable conv with ``bn`` folded into its full-width weights (eval mode)."""
    if is_qat or conv.training or bn.training:
        raise NotImplementedError(
            f'{type(conv).__name__} + {type(bn).__name__} fuse in eval mode only '
            '(post-training quantization): torch has no quantization-aware-training '
            'module that slims; call model.eval() before fuse_modules')
    return fuse_conv_bn_eval(conv, bn)


def fuse_slimmable_conv_bn_relu(is_qat: bool, conv: nn.Module, bn: nn.Module,
                                relu: nn.Module) -> nn.Module:
    """The fused slimmable conv, applying a ReLU to its outputs."""
    fused = fuse_slimmable_conv_bn(is_qat, conv, bn)
    fused.__class__ = _WITH_RELU[type(conv)]
    return fused


#: Layer types -> fuser, in the form ``fuse_modules`` takes.
SLIMMABLE_FUSER_METHODS: Dict[Tuple[type, ...], Callable] = {
    (SlimmableConv2d, SlimmableBatchNorm2d): fuse_slimmable_conv_bn,
    (SlimmableConv2d, SlimmableBatchNorm2d, nn.ReLU): fuse_slimmable_conv_bn_relu,
    (SlimmableConv3d, SlimmableBatchNorm3d): fuse_slimmable_conv_bn,
    (SlimmableConv3d, SlimmableBatchNorm3d, nn.ReLU): fuse_slimmable_conv_bn_relu,
}

# torch has no public registry for eager-mode fusion; its default table is a module dict.
fuser_method_mappings._DEFAULT_OP_LIST_TO_FUSER_METHOD.update(SLIMMABLE_FUSER_METHODS)
