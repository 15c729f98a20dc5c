"""Slimmable layers: stock layers that run on a prefix slice of their weights.

Each layer keeps its full-width parameters under the stock names and shapes. Input
channels follow the incoming tensor (``slim_in``); output channels follow
``active_out_channels``, which a :class:`~mutualnet_mm.ops.Slimmable` parent sets from its
channel plan (``slim_out``). Depthwise convolutions follow their input. Batch norms
normalize with the first ``c`` entries of their affine parameters and running statistics.
"""
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class SlimmableLayer:
    """What a slimmable layer exposes: which sides slim, and its active output count."""

    slim_in: bool = True
    slim_out: bool = True
    active_out_channels: Optional[int] = None

    def _active_in(self, channels: int, full: int) -> int:
        if channels > full or (not self.slim_in and channels != full):
            allowed = f'at most {full}' if self.slim_in else f'exactly {full}'
            raise ValueError(f'{type(self).__name__} got an input with {channels} channels; '
                             f'it accepts {allowed}')
        return channels

    def _active_out(self, full: int) -> int:
        if not self.slim_out or self.active_out_channels is None:
            return full
        return self.active_out_channels

    def set_active_out_channels(self, channels: Optional[int]) -> None:
        """Set how many output channels the layer computes (``None``: all)."""
        full = self._full_out_channels()
        if channels is not None and not 0 < channels <= full:
            raise ValueError(f'{type(self).__name__} has {full} output channels; '
                             f'cannot run {channels}')
        if channels is not None and channels != full and not self.slim_out:
            raise ValueError(f'{type(self).__name__} does not slim its outputs '
                             f'(slim_out=False); cannot run {channels} of {full}')
        self.active_out_channels = channels

    def _full_out_channels(self) -> int:
        raise NotImplementedError


class _SlimmableConvMixin(SlimmableLayer):
    """Shared forward of slimmable 2D and 3D convolutions."""

    in_channels: int
    out_channels: int
    groups: int
    weight: Tensor
    bias: Optional[Tensor]

    def _full_out_channels(self) -> int:
        return self.out_channels

    @property
    def is_depthwise(self) -> bool:
        """Whether each input channel has its own filters (outputs follow inputs)."""
        return self.groups > 1 and self.groups == self.in_channels

    def active_shape(self, in_channels: int) -> tuple:
        """``(out, in_per_group, groups)`` the layer runs with for this many inputs."""
        in_channels = self._active_in(in_channels, self.in_channels)
        if self.is_depthwise:
            multiplier = self.out_channels // self.in_channels
            return in_channels * multiplier, 1, in_channels
        if in_channels % self.groups:
            raise ValueError(f'{type(self).__name__} with {self.groups} groups got '
                             f'{in_channels} input channels (not divisible)')
        return self._active_out(self.out_channels), in_channels // self.groups, self.groups

    def forward(self, x: Tensor) -> Tensor:
        out_c, in_per_group, groups = self.active_shape(x.shape[1])
        if out_c == self.out_channels and groups == self.groups and \
                in_per_group == self.weight.shape[1]:
            return self._conv_forward(x, self.weight, self.bias)
        weight = self.weight[:out_c, :in_per_group]
        bias = None if self.bias is None else self.bias[:out_c]
        padding = self.padding
        if self.padding_mode != 'zeros':
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return self._conv_fn(x, weight, bias, self.stride, padding, self.dilation, groups)


class SlimmableConv2d(_SlimmableConvMixin, nn.Conv2d):
    """``nn.Conv2d`` whose input and output channels can run as prefix slices."""

    _conv_fn = staticmethod(F.conv2d)


class SlimmableConv3d(_SlimmableConvMixin, nn.Conv3d):
    """``nn.Conv3d`` whose input and output channels can run as prefix slices."""

    _conv_fn = staticmethod(F.conv3d)


class SlimmableLinear(SlimmableLayer, nn.Linear):
    """``nn.Linear`` whose input and output features can run as prefix slices."""

    def _full_out_channels(self) -> int:
        return self.out_features

    def forward(self, x: Tensor) -> Tensor:
        in_f = self._active_in(x.shape[-1], self.in_features)
        out_f = self._active_out(self.out_features)
        if in_f == self.in_features and out_f == self.out_features:
            return super().forward(x)
        bias = None if self.bias is None else self.bias[:out_f]
        return F.linear(x, self.weight[:out_f, :in_f], bias)


class SlimmableConvTranspose2d(SlimmableLayer, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose input and output channels can run as prefix slices.

    Only ungrouped deconvolutions slim (the weight is laid out ``(in, out, kh, kw)``).
    """

    def _full_out_channels(self) -> int:
        return self.out_channels

    def forward(self, x: Tensor, output_size: Optional[list] = None) -> Tensor:
        in_c = self._active_in(x.shape[1], self.in_channels)
        out_c = self._active_out(self.out_channels)
        if in_c == self.in_channels and out_c == self.out_channels:
            return super().forward(x, output_size)
        if self.groups != 1:
            raise ValueError(f'{type(self).__name__} with {self.groups} groups cannot slim')
        output_padding = self._output_padding(x, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        bias = None if self.bias is None else self.bias[:out_c]
        return F.conv_transpose2d(x, self.weight[:in_c, :out_c], bias, self.stride,
                                  self.padding, output_padding, self.groups, self.dilation)


class _SlimmableBatchNormBase(SlimmableLayer, _BatchNorm):
    """Batch norm over the first ``c`` channels of its (shared) parameters and stats.

    Channels always follow the input; ``slim_out`` has no meaning here.
    """

    def _full_out_channels(self) -> int:
        return self.num_features

    def _momentum(self) -> float:
        """The running-average factor of this step (cumulative when momentum is None)."""
        if not (self.training and self.track_running_stats):
            return 0.0 if self.momentum is None else self.momentum
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def _sliced(self, channels: int) -> tuple:
        def cut(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t[:channels]
        use_batch_stats = self.training or self.running_mean is None
        keep_running = not self.training or self.track_running_stats
        running_mean = cut(self.running_mean) if keep_running else None
        running_var = cut(self.running_var) if keep_running else None
        return (running_mean, running_var, cut(self.weight), cut(self.bias),
                use_batch_stats)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        channels = self._active_in(x.shape[1], self.num_features)
        if channels == self.num_features and not self._use_sync(x):
            return super().forward(x)
        factor = self._momentum()
        running_mean, running_var, weight, bias, use_batch_stats = self._sliced(channels)
        if self._use_sync(x):
            return self._sync_forward(x, weight, bias, running_mean, running_var, factor)
        return F.batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats,
                            factor, self.eps)

    def _use_sync(self, x: Tensor) -> bool:
        return False

    def _sync_forward(self, *args) -> Tensor:
        raise NotImplementedError


class SlimmableBatchNorm2d(_SlimmableBatchNormBase, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over a prefix of its channels."""


class SlimmableBatchNorm3d(_SlimmableBatchNormBase, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` over a prefix of its channels."""


class SlimmableSyncBatchNorm(_SlimmableBatchNormBase):
    """Batch norm whose training statistics are synchronized across processes.

    Used where a stock config asks for ``SyncBN``. Deliberately not a subclass of
    ``nn.SyncBatchNorm``: mmengine reverts those to plain batch norms in single-process
    runs, which would lose the slicing. Outside distributed training it behaves as
    :class:`SlimmableBatchNorm2d` (or 3d).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 process_group=None, **kwargs) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f'expected an input with at least 2 dims, got {x.dim()}')

    def _use_sync(self, x: Tensor) -> bool:
        return (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def _sync_forward(self, x, weight, bias, running_mean, running_var, factor) -> Tensor:
        from torch.nn.modules._functions import SyncBatchNorm as SyncBatchNormFunction
        if x.device.type == 'cpu':
            raise ValueError('SlimmableSyncBatchNorm (SyncBN) got a CPU tensor in a '
                             'multi-process run: torch synchronizes batch norms on GPUs only; '
                             "use norm_cfg=dict(type='BN') to train on CPUs")
        group = self.process_group or dist.group.WORLD
        return SyncBatchNormFunction.apply(x, weight, bias, running_mean, running_var, self.eps,
                                     factor, group, dist.get_world_size(group))


_SLIMMABLE_OF = {
    nn.Conv2d: SlimmableConv2d,
    nn.Conv3d: SlimmableConv3d,
    nn.ConvTranspose2d: SlimmableConvTranspose2d,
    nn.Linear: SlimmableLinear,
    nn.BatchNorm2d: SlimmableBatchNorm2d,
    nn.BatchNorm3d: SlimmableBatchNorm3d,
    nn.SyncBatchNorm: SlimmableSyncBatchNorm,
}


def to_slimmable_layer(layer: nn.Module) -> nn.Module:
    """The slimmable twin of a stock layer, sharing its parameters and buffers.

    Layers that are already slimmable, or have no slimmable twin, are returned unchanged.
    """
    if isinstance(layer, SlimmableLayer):
        return layer
    twin_cls = _SLIMMABLE_OF.get(type(layer))
    if twin_cls is None and type(layer).__name__ == 'SyncBatchNorm':  # mmcv's SyncBN
        twin_cls = SlimmableSyncBatchNorm
    if twin_cls is None and type(layer).__module__ == 'mmcv.cnn.bricks.wrappers':
        # mmcv's empty-input wrappers ('Conv', 'deconv', ...) run the torch layer as is
        twin_cls = next((_SLIMMABLE_OF[base] for base in type(layer).__mro__
                         if base in _SLIMMABLE_OF), None)
    if twin_cls is None:
        return layer
    twin = twin_cls.__new__(twin_cls)
    nn.Module.__init__(twin)
    state = {k: v for k, v in layer.__dict__.items()
             if k not in ('_parameters', '_buffers', '_modules')}
    twin.__dict__.update(state)
    twin._parameters = layer._parameters
    twin._buffers = layer._buffers
    twin._modules = layer._modules
    if isinstance(twin, SlimmableSyncBatchNorm):
        twin.process_group = getattr(layer, 'process_group', None)
    return twin


def convert_to_slimmable(module: nn.Module) -> nn.Module:
    """Replace every stock conv, linear and batch-norm layer below ``module`` in place.

    Names, parameters and buffers are kept (the twins share them), so state dicts and
    ``init_cfg`` checkpoints are unchanged. Returns ``module`` (or its twin if it is a
    layer itself).
    """
    for name, child in module.named_children():
        twin = convert_to_slimmable(child)
        if twin is not child:
            setattr(module, name, twin)
    return to_slimmable_layer(module)


@torch.no_grad()
def reset_bn_statistics(module: nn.Module, cumulative: bool = True) -> int:
    """Reset the running statistics of every batch norm below ``module``.

    Args:
        module: The model.
        cumulative: Switch the norms to cumulative averaging (``momentum=None``), as
            post-statistics calibration needs.

    Returns:
        How many batch norms were reset.
    """
    count = 0
    for layer in module.modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            layer.reset_running_stats()
            if cumulative:
                layer.momentum = None
            count += 1
    return count
