"""Convolutions whose inputs or outputs concatenate parts that slim separately.

A stock network that concatenates two branches (a CSP layer's main and shortcut paths, a
SlowFast lateral connection, the poolings of an SPP block) and feeds the result to a
convolution has, at a narrower width, each branch narrower: the active channels are a
prefix of each part, not a prefix of the whole. A :class:`SegmentedConvNd` knows the
full size of each part (its segments) and how many leading channels of each are active,
runs on the matching weight rows and columns, and cuts the same ones for
:func:`~mutualnet_mm.ops.slice_state_dict` (:meth:`~SegmentedConvNd.slice_tensor`).
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import layers  # layers.active_channels, layers.sliced_weights: the names torch.fx wraps
from .layers import SlimmableConv2d, SlimmableConv3d, SlimmableConvNd, kept_slices

Segments = Tuple[int, ...]


def _segments(sizes: Optional[Sequence[int]], full: int, what: str) -> Optional[Segments]:
    if sizes is None:
        return None
    sizes = tuple(int(s) for s in sizes)
    if sum(sizes) != full or min(sizes) <= 0:
        raise ValueError(f'{what} segments {sizes} do not split the {full} channels')
    return sizes


def gather_segments(tensor: Tensor, full: Segments, active: Segments, dim: int) -> Tensor:
    """The leading ``active`` entries of each ``full`` part of ``tensor`` along ``dim``."""
    parts, start = [], 0
    for size, used in zip(full, active):
        parts.append(tensor.narrow(dim, start, used))
        start += size
    return torch.cat(parts, dim=dim)


class SegmentedConvNd(SlimmableConvNd):
    """A slimmable convolution whose inputs and/or outputs are concatenated segments.

    ``in_segments`` / ``out_segments`` are the full channel counts of the parts (``None``:
    one part, sliced as a prefix as usual); ``active_in_segments`` /
    ``active_out_segments`` how many leading channels of each part are active.
    """

    in_segments: Optional[Segments] = None
    out_segments: Optional[Segments] = None
    active_in_segments: Optional[Segments] = None
    active_out_segments: Optional[Segments] = None
    width_state = ('active_out_channels', 'active_in_segments', 'active_out_segments')

    @classmethod
    def from_conv(cls, conv: SlimmableConvNd, in_segments: Optional[Sequence[int]] = None,
                  out_segments: Optional[Sequence[int]] = None) -> 'SegmentedConvNd':
        """The segment-aware twin of ``conv``, sharing its parameters."""
        if conv.groups != 1 or conv.padding_mode != 'zeros':
            raise ValueError('only ungrouped, zero-padded convs take segmented channels, '
                             f'got groups={conv.groups}, padding_mode={conv.padding_mode!r}')
        twin = cls.__new__(cls)
        twin.__dict__.update(conv.__dict__)  # shares parameters, buffers and hooks
        twin.in_segments = twin.active_in_segments = _segments(
            in_segments, conv.in_channels, 'input')
        twin.out_segments = twin.active_out_segments = _segments(
            out_segments, conv.out_channels, 'output')
        return twin

    def set_active_segments(self, inputs: Optional[Sequence[int]] = None,
                            outputs: Optional[Sequence[int]] = None) -> None:
        """Set how many leading channels of each input (output) part are active."""
        for name, sizes in (('in', inputs), ('out', outputs)):
            if sizes is None:
                continue
            full = getattr(self, f'{name}_segments')
            sizes = tuple(int(s) for s in sizes)
            if full is None or len(sizes) != len(full) or \
                    not all(0 < a <= f for a, f in zip(sizes, full)):
                raise ValueError(f'active {name}put segments {sizes} do not fit the full '
                                 f'segments {full}')
            setattr(self, f'active_{name}_segments', sizes)
            if name == 'out':
                self.active_out_channels = sum(sizes)

    def set_active_in_segments(self, sizes: Sequence[int]) -> None:
        """Set how many leading channels of each input part are active."""
        self.set_active_segments(inputs=sizes)

    def _cut(self, tensor: Tensor, out_dim: bool) -> Tensor:
        full, active = ((self.out_segments, self.active_out_segments) if out_dim
                        else (self.in_segments, self.active_in_segments))
        if full is None or full == active:
            return tensor
        return gather_segments(tensor, full, active, 0 if out_dim else 1)

    def _sliced_parameters(self, x: Tensor) -> tuple:
        weight = self._cut(self.weight, out_dim=True)
        bias = None if self.bias is None else self._cut(self.bias, out_dim=True)
        outputs = self._active_out(self.out_channels)
        owner = type(self).__name__
        if self.in_segments is None:
            return layers.sliced_weights(x, weight, bias, outputs, 1, False, self.slim_in,
                                         owner)
        # the exact count is checked inside a torch.fx-wrapped call: no branch on a shape
        layers.active_channels(x, sum(self.active_in_segments), False,
                               f'{owner} (input segments {self.active_in_segments})')
        weight = self._cut(weight, out_dim=False)[:outputs]
        return weight, None if bias is None else bias[:outputs], 1

    def _current_parameters(self, x: Tensor, dim: int = 1) -> tuple:
        if layers.evaluating(x):
            parameters = self._parameters  # type: ignore[attr-defined]
            key = (x.shape[dim], self.active_out_channels, self.active_in_segments,
                   self.active_out_segments)
            return kept_slices(self, key, (parameters['weight'], parameters['bias']),
                               self._sliced_parameters, x)
        return self._sliced_parameters(x)

    def slice_tensor(self, name: str, tensor: Tensor, shape: Sequence[int]) -> Tensor:
        """Cut a full parameter to ``shape`` for the active segments."""
        for dim, active in ((0, self.active_out_segments), (1, self.active_in_segments)):
            if active is not None and dim < len(shape) and (name == 'weight' or dim == 0) \
                    and shape[dim] != sum(active):
                raise ValueError(f'cannot cut the {name} to {tuple(shape)}: the active '
                                 f'segments {active} give {sum(active)} channels along '
                                 f'dimension {dim} (set the width first)')
        tensor = self._cut(tensor, out_dim=True)
        if name == 'weight':
            tensor = self._cut(tensor, out_dim=False)
        return tensor[tuple(slice(0, s) for s in shape)]


class SegmentedConv2d(SegmentedConvNd, SlimmableConv2d):
    """A :class:`SlimmableConv2d` with segmented inputs and/or outputs."""


class SegmentedConv3d(SegmentedConvNd, SlimmableConv3d):
    """A :class:`SlimmableConv3d` with segmented inputs and/or outputs."""
