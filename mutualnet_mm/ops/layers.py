"""Slimmable layers: stock layers that run on a prefix slice of their weights.

Each layer keeps its full-width parameters under the stock names and shapes. Input
channels follow the incoming tensor (``slim_in``); output channels follow
``active_out_channels``, which a :class:`~mutualnet_mm.ops.Slimmable` parent sets from its
channel plan (``slim_out``). Depthwise convolutions follow their input. Batch norms
normalize with the first ``c`` entries of their affine parameters and running statistics.
"""
from collections import OrderedDict
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Sliced parameter sets an evaluating layer keeps (one per input/output channel count).
SLICES_PER_LAYER = 4


def evaluating(x) -> bool:
    """Whether a forward on ``x`` may reuse kept slices: no gradients, not FX tracing."""
    return not torch.is_grad_enabled() and not isinstance(x, torch.fx.Proxy)


def kept_slices(layer: 'SlimmableLayer', key: tuple, sources: tuple,
                make: Callable[..., tuple], *args) -> tuple:
    """``make(*args)``, a layer's sliced tensors for ``key``, reused while ``sources`` are
    unchanged.

    Without gradients a layer at a fixed width slices the same tensors on every call, and
    a convolution copies a weight sliced along its inputs each time: at batch 1 and small
    inputs that rivals the arithmetic. The layer keeps up to :data:`SLICES_PER_LAYER`
    results in ``_kept_slices`` (never pickled or deep-copied), each valid while every
    source is the same tensor; a result holding a copy (not only views, which follow
    in-place changes) is also checked against the sources' versions. Moves to another
    device or dtype discard them (:meth:`SlimmableLayer._apply`); writes through
    ``tensor.data`` and ``set_`` are not seen (:func:`discard_kept_slices`). The hit path
    runs on every layer of every evaluating forward: a few comparisons.
    """
    kept = layer._kept_slices
    if kept is None:
        kept = layer.__dict__['_kept_slices'] = OrderedDict()
    else:
        entry = kept.get(key)
        if entry is not None:
            kept_sources, versions, value = entry
            for kept_source, source in zip(kept_sources, sources):
                if kept_source is not source:
                    break
            else:
                if versions is None:
                    return value
                for source, version in zip(sources, versions):
                    if source is not None and source._version != version:
                        break
                else:
                    return value
    value = _contiguous(make(*args))
    # holding the sources keeps them alive, so an identical one is the same tensor
    versions = None if all(_follows(t, sources) for t in value) else tuple(
        -1 if t is None else t._version for t in sources)
    kept[key] = (sources, versions, value)
    kept.move_to_end(key)
    if len(kept) > SLICES_PER_LAYER:
        kept.popitem(last=False)
    return value


def _follows(value, sources: tuple) -> bool:
    """Whether ``value`` is no tensor, or one of ``sources`` or a view of one."""
    return not isinstance(value, Tensor) or any(
        source is not None and (value is source or value._base is source)
        for source in sources)


def _contiguous(tensors: tuple) -> tuple:
    return tuple(t.contiguous() if isinstance(t, Tensor) else t for t in tensors)


@torch.fx.wrap
def active_channels(x: Tensor, full: int, slim: bool, owner: str, dim: int = 1,
                    groups: int = 1) -> int:
    """How many channels of a layer's ``full`` inputs ``x`` carries (along ``dim``).

    Raises ``ValueError`` when ``x`` has more than ``full`` channels, fewer while
    ``slim`` is False, or a count not divisible by ``groups``. One ``torch.fx`` node when
    traced, so traced layers keep these checks and never branch on a shape.
    """
    channels = x.shape[dim]
    if channels > full or (not slim and channels != full):
        allowed = f'at most {full}' if slim else f'exactly {full}'
        raise ValueError(f'{owner} got an input with {channels} channels; it accepts {allowed}')
    if channels % groups:
        raise ValueError(f'{owner} with {groups} groups got {channels} input channels '
                         '(not divisible)')
    return channels


@torch.fx.wrap
def sliced_weights(x: Tensor, weight: Tensor, bias: Optional[Tensor], out_channels: int,
                   groups: int, depthwise: bool, slim_in: bool, owner: str,
                   dim: int = 1) -> tuple:
    """``(weight, bias, groups)`` a conv or linear layer runs with on input ``x``.

    The weight ``(out, in / groups, ...)`` is cut to ``[:out_channels, :channels /
    groups]`` for the ``channels`` of ``x`` along ``dim``; a depthwise layer's outputs
    and groups follow its input instead. One ``torch.fx`` node when traced; eagerly, the
    full width takes the weights as they are.
    """
    full_out = weight.shape[0]
    full_in = weight.shape[1] * groups
    channels = active_channels(x, full_in, slim_in, owner, dim, 1 if depthwise else groups)
    if depthwise:
        out_channels, groups = full_out // full_in * channels, channels
    if channels == full_in and out_channels == full_out:
        return weight, bias, groups
    weight = weight[:out_channels] if depthwise else weight[:out_channels, :channels // groups]
    return weight, None if bias is None else bias[:out_channels], groups


@torch.fx.wrap
def sliced_transposed_weights(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                              out_channels: int, groups: int, slim_in: bool,
                              owner: str) -> tuple:
    """``(weight, bias)`` a transposed conv (weight ``(in, out / groups, ...)``) runs with,
    as :func:`sliced_weights`."""
    full_in, full_out = weight.shape[0], weight.shape[1] * groups
    channels = active_channels(x, full_in, slim_in, owner)
    if channels == full_in and out_channels == full_out:
        return weight, bias
    return weight[:channels, :out_channels], None if bias is None else bias[:out_channels]


class SlimmableLayer:
    """What a slimmable layer exposes: which sides slim, and its active output count.

    Forwards take their weights from a ``torch.fx``-wrapped function
    (:func:`sliced_weights`, :func:`sliced_batch_norm`), so they trace.
    """

    slim_in: bool = True
    slim_out: bool = True
    active_out_channels: Optional[int] = None
    #: Attributes a width change sets (see :class:`~mutualnet_mm.ops.WidthSnapshot`).
    width_state: tuple = ('active_out_channels',)
    #: Sliced tensors kept for evaluation (:func:`kept_slices`); made on first use.
    _kept_slices: Optional[OrderedDict] = None

    def _active_out(self, full: int) -> int:
        if not self.slim_out or self.active_out_channels is None:
            return full
        return self.active_out_channels

    def _current_parameters(self, x: Tensor, dim: int = 1) -> tuple:
        """The sliced parameters for input ``x`` (channels along ``dim``): kept ones when
        evaluating (:func:`kept_slices`), else views from ``_sliced_parameters``."""
        if evaluating(x):
            # straight from the parameter table: nn.Module.__getattr__ costs more than
            # the whole lookup of kept slices
            parameters = self._parameters  # type: ignore[attr-defined]
            return kept_slices(self, (x.shape[dim], self.active_out_channels),
                               (parameters['weight'], parameters['bias']),
                               self._sliced_parameters, x)
        return self._sliced_parameters(x)

    def _sliced_parameters(self, x: Tensor) -> tuple:
        raise NotImplementedError

    def _apply(self, fn, *args, **kwargs):
        """Discard kept slices when parameters move (``to``, ``half``, ...)."""
        self.__dict__.pop('_kept_slices', None)
        return super()._apply(fn, *args, **kwargs)  # type: ignore[misc]

    def __getstate__(self) -> dict:
        """The module's state without its kept slices (pickling, ``copy.deepcopy``)."""
        state = dict(super().__getstate__())  # type: ignore[misc]
        state.pop('_kept_slices', None)
        return state

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


class SlimmableConvNd(SlimmableLayer):
    """What slimmable 2D and 3D convolutions share: the sliced parameters and the forward."""

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

    def sliced_parameters(self, x: Tensor) -> tuple:
        """``(weight, bias, groups)`` the layer runs with on input ``x``."""
        return self._current_parameters(x)

    def _sliced_parameters(self, x: Tensor) -> tuple:
        return sliced_weights(x, self.weight, self.bias, self._active_out(self.out_channels),
                              self.groups, self.is_depthwise, self.slim_in,
                              type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias, groups = self._current_parameters(x)
        padding = self.padding
        if self.padding_mode != 'zeros':
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return self._conv_fn(x, weight, bias, self.stride, padding, self.dilation, groups)


class SlimmableConv2d(SlimmableConvNd, nn.Conv2d):
    """``nn.Conv2d`` whose input and output channels can run as prefix slices."""

    _conv_fn = staticmethod(F.conv2d)


class SlimmableConv3d(SlimmableConvNd, nn.Conv3d):
    """``nn.Conv3d`` whose input and output channels can run as prefix slices."""

    _conv_fn = staticmethod(F.conv3d)


class SlimmableLinear(SlimmableLayer, nn.Linear):
    """``nn.Linear`` whose input and output features can run as prefix slices."""

    def _full_out_channels(self) -> int:
        return self.out_features

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._current_parameters(x, dim=-1)
        return F.linear(x, weight, bias)

    def _sliced_parameters(self, x: Tensor) -> tuple:
        weight, bias, _ = sliced_weights(x, self.weight, self.bias,
                                         self._active_out(self.out_features), 1, False,
                                         self.slim_in, type(self).__name__, dim=-1)
        return weight, bias


class SlimmableConvTranspose2d(SlimmableLayer, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose input and output channels can run as prefix slices.

    Only ungrouped deconvolutions slim (the weight is laid out ``(in, out, kh, kw)``).
    """

    def _full_out_channels(self) -> int:
        return self.out_channels

    def set_active_out_channels(self, channels: Optional[int]) -> None:
        if self.groups != 1 and channels not in (None, self.out_channels):
            raise ValueError(f'{type(self).__name__} with {self.groups} groups cannot slim')
        super().set_active_out_channels(channels)

    def forward(self, x: Tensor, output_size: Optional[list] = None) -> Tensor:
        weight, bias = self._current_parameters(x)
        output_padding = self._output_padding(x, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)

    def _sliced_parameters(self, x: Tensor) -> tuple:
        return sliced_transposed_weights(
            x, self.weight, self.bias, self._active_out(self.out_channels), self.groups,
            self.slim_in and self.groups == 1, type(self).__name__)


def _norm_arguments(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                    weight: Optional[Tensor], bias: Optional[Tensor],
                    num_batches_tracked: Optional[Tensor], training: bool,
                    track_running_stats: bool, momentum: Optional[float], num_features: int,
                    dims: tuple, owner: str) -> tuple:
    """What ``_BatchNorm.forward`` passes to ``F.batch_norm``, cut to ``x``'s channels.

    Returns ``(weight, bias, running_mean, running_var, factor, use_batch_stats)``;
    counts the batch in ``num_batches_tracked`` when training with running statistics.
    """
    if x.dim() not in dims:
        raise ValueError(f'{owner} expected a {"D or ".join(map(str, dims))}D input '
                         f'(got {x.dim()}D input)')
    channels = active_channels(x, num_features, True, owner)
    factor = 0.0 if momentum is None else momentum
    if training and track_running_stats and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked)
    use_batch_stats = training or running_mean is None
    if training and not track_running_stats:
        running_mean = running_var = None
    if channels != num_features:
        weight, bias, running_mean, running_var = (
            None if t is None else t[:channels]
            for t in (weight, bias, running_mean, running_var))
    return weight, bias, running_mean, running_var, factor, use_batch_stats


@torch.fx.wrap
def sliced_batch_norm(x: Tensor, running_mean: Optional[Tensor],
                      running_var: Optional[Tensor], weight: Optional[Tensor],
                      bias: Optional[Tensor], num_batches_tracked: Optional[Tensor],
                      training: bool, track_running_stats: bool, momentum: Optional[float],
                      num_features: int, dims: tuple, owner: str, eps: float) -> Tensor:
    """``_BatchNorm.forward`` over the first ``x.shape[1]`` channels of its tensors.

    One ``torch.fx`` node when traced: the running statistics stay the module's buffers.
    """
    weight, bias, running_mean, running_var, factor, use_batch_stats = _norm_arguments(
        x, running_mean, running_var, weight, bias, num_batches_tracked, training,
        track_running_stats, momentum, num_features, dims, owner)
    return F.batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, factor,
                        eps)


class _SlimmableBatchNormBase(SlimmableLayer, _BatchNorm):
    """Batch norm over the first ``c`` channels of its (shared) parameters and stats.

    Channels always follow the input; ``slim_out`` has no meaning here.
    """

    def _full_out_channels(self) -> int:
        return self.num_features

    #: Input dimensions the norm accepts (batch and channels included).
    input_dims: tuple = (2, 3, 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and evaluating(x):
            buffers = self._buffers
            if buffers['running_mean'] is not None:
                parameters = self._parameters
                weight, bias, mean, var = kept_slices(
                    self, (x.shape[1], x.dim()),
                    (parameters['weight'], parameters['bias'], buffers['running_mean'],
                     buffers['running_var']),
                    self._eval_tensors, x)
                return torch.batch_norm(x, weight, bias, mean, var, False, 0.0, self.eps,
                                        torch.backends.cudnn.enabled)
        args = (x, self.running_mean, self.running_var, self.weight, self.bias,
                self.num_batches_tracked, self.training, self.track_running_stats,
                self.momentum, self.num_features, self.input_dims, type(self).__name__)
        if self._use_sync(x):
            weight, bias, running_mean, running_var, factor, _ = _norm_arguments(*args)
            return self._sync_forward(x, weight, bias, running_mean, running_var, factor)
        return sliced_batch_norm(*args, eps=self.eps)

    def _eval_tensors(self, x: Tensor) -> tuple:
        """``(weight, bias, running_mean, running_var)`` cut to ``x``'s channels (checked)."""
        weight, bias, mean, var, _, _ = _norm_arguments(
            x, self.running_mean, self.running_var, self.weight, self.bias, None, False,
            self.track_running_stats, self.momentum, self.num_features, self.input_dims,
            type(self).__name__)
        return weight, bias, mean, var

    def _use_sync(self, x: Tensor) -> bool:
        return False

    def _sync_forward(self, *args) -> Tensor:
        raise NotImplementedError


class SlimmableBatchNorm2d(_SlimmableBatchNormBase, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over a prefix of its channels."""

    input_dims = (4,)


class SlimmableBatchNorm3d(_SlimmableBatchNormBase, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` over a prefix of its channels."""

    input_dims = (5,)


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


def register_slimmable_twin(stock_cls: type, twin_cls: type) -> None:
    """Make :func:`convert_to_slimmable` swap layers of exactly ``stock_cls`` for ``twin_cls``.

    ``twin_cls`` subclasses both :class:`SlimmableLayer` and ``stock_cls`` and keeps its
    parameters (e.g. mmcv's deformable convolutions).
    """
    if not (issubclass(twin_cls, stock_cls) and issubclass(twin_cls, SlimmableLayer)):
        raise TypeError(f'{twin_cls.__name__} must subclass SlimmableLayer and '
                        f'{stock_cls.__name__}')
    _SLIMMABLE_OF[stock_cls] = twin_cls


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


def discard_kept_slices(module: nn.Module) -> None:
    """Drop every layer's kept slices below ``module`` (:func:`kept_slices`).

    For writes that bypass the version counters: mmengine's ``EMAHook`` swaps the
    averaged weights in and out through ``param.data``, so slices kept before a swap would
    still look current after it.
    """
    for layer in module.modules():
        if isinstance(layer, SlimmableLayer):
            layer.__dict__.pop('_kept_slices', None)


def convert_to_slimmable(module: nn.Module, _twins: Optional[dict] = None) -> nn.Module:
    """Replace every stock conv, linear and batch-norm layer below ``module`` in place.

    Names, parameters and buffers are kept (the twins share them), so state dicts and
    ``init_cfg`` checkpoints are unchanged; a layer shared by several parents (RTMDet's
    towers, shared across levels) gets one twin, shared as the layer was. Returns
    ``module`` (or its twin if it is a layer itself).
    """
    twins = {} if _twins is None else _twins
    if id(module) in twins:
        return twins[id(module)]
    for name, child in module.named_children():
        twin = convert_to_slimmable(child, twins)
        if twin is not child:
            setattr(module, name, twin)
    twins[id(module)] = to_slimmable_layer(module)
    return twins[id(module)]


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
