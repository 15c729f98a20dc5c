"""Slimmable twins of mmcv's deformable convolutions (``DCN``, ``DCNv2`` conv configs).

A deformable convolution slims like a convolution: its weight runs as a prefix slice
``[:active outputs, :input channels]``; the offset (and mask) conv takes the same
inputs and keeps all its outputs, since their count depends on the kernel and
``deform_groups`` only. Importing this module registers the twins with
:func:`~mutualnet_mm.ops.convert_to_slimmable`. mmcv runs both on CPU and GPU.
"""
import torch
from mmcv.ops import (
    DeformConv2dPack,
    ModulatedDeformConv2dPack,
    deform_conv2d,
    modulated_deform_conv2d,
)
from torch import Tensor

from ..ops import (
    SlimmableLayer,
    layers,  # layers.active_channels: the name torch.fx wraps
    register_slimmable_twin,
)


class _SlimmableDeformMixin(SlimmableLayer):
    """Weight slicing shared by the two deformable convolutions."""

    def _full_out_channels(self) -> int:
        return self.out_channels

    def _sliced_weight(self, x: Tensor) -> tuple:
        """``(weight, bias)`` cut to the active outputs and ``x``'s channels."""
        weight, bias, _ = layers.sliced_weights(
            x, self.weight, getattr(self, 'bias', None),  # DeformConv2d has no bias
            self._active_out(self.out_channels), self.groups, False, self.slim_in,
            type(self).__name__)
        return weight.contiguous(), bias  # mmcv's kernels need a contiguous weight


class SlimmableDeformConv2dPack(_SlimmableDeformMixin, DeformConv2dPack):
    """mmcv ``DeformConv2dPack`` (``dict(type='DCN')``) whose channels slim."""

    def forward(self, x: Tensor) -> Tensor:
        weight, _ = self._sliced_weight(x)
        offset = self.conv_offset(x)
        return deform_conv2d(x, offset, weight, self.stride, self.padding, self.dilation,
                             self.groups, self.deform_groups, False, self.im2col_step)


class SlimmableModulatedDeformConv2dPack(_SlimmableDeformMixin, ModulatedDeformConv2dPack):
    """mmcv ``ModulatedDeformConv2dPack`` (``dict(type='DCNv2')``) whose channels slim."""

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._sliced_weight(x)
        o1, o2, mask = torch.chunk(self.conv_offset(x), 3, dim=1)
        return modulated_deform_conv2d(x, torch.cat((o1, o2), dim=1), torch.sigmoid(mask),
                                       weight, bias, self.stride, self.padding,
                                       self.dilation, self.groups, self.deform_groups)


register_slimmable_twin(DeformConv2dPack, SlimmableDeformConv2dPack)
register_slimmable_twin(ModulatedDeformConv2dPack, SlimmableModulatedDeformConv2dPack)
