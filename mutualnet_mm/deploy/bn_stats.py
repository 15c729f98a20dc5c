"""Batch-norm statistics per configuration: calibrate once, swap in at run time.

A configuration's running statistics are only valid for it (they depend on the width and
the input scale), so a model that switches configurations at run time keeps one set per
configuration and swaps it in: a copy of the buffers, no data needed.
"""
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine.calibration import calibrate_bn
from ..engine.subnet import SubnetConfig
from ..reliability.checkpoint import load_checkpoint_safely
from ..reliability.fileio import atomic_write
from ..reliability.fingerprint import check_fingerprint

#: 2: the file records the fingerprint of the checkpoint it was calibrated on.
BN_STATS_VERSION = 2
_ENTRY_KEYS = ('width', 'scale', 'frames', 'stats')
REGENERATE_BN_STATS = ('python tools/calibrate_bn_stats.py CONFIG CHECKPOINT --query-table '
                       'QUERY_TABLE --out BN_STATS')

#: ``{bn_name: (running_mean, running_var)}`` of one configuration.
BNState = Dict[str, Tuple[Tensor, Tensor]]


def _norms(model: nn.Module) -> Dict[str, _BatchNorm]:
    return {name: m for name, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats}


def bn_state(model: nn.Module) -> BNState:
    """A copy of the running statistics of every batch norm of ``model``."""
    return {name: (m.running_mean.detach().clone(), m.running_var.detach().clone())
            for name, m in _norms(model).items()}


class BNStateSwitch:
    """Loads one stored BN state into a model with a single batched copy.

    :func:`load_bn_state` checks names and shapes on every call; a switch checks them
    once (by loading the state) and then copies every statistic with one
    ``torch._foreach_copy_``.
    """

    def __init__(self, model: nn.Module, state: BNState) -> None:
        load_bn_state(model, state)
        self._targets: List[Tensor] = []
        self._sources: List[Tensor] = []
        for name, norm in _norms(model).items():
            for target, source in zip((norm.running_mean, norm.running_var), state[name]):
                self._targets.append(target)
                self._sources.append(source.to(target.device, target.dtype))

    @torch.no_grad()
    def load(self) -> None:
        """Copy the stored statistics into the model's batch norms."""
        torch._foreach_copy_(self._targets, self._sources)


def _problem(stat: str, value: Tensor, shape: Optional[torch.Size]) -> Optional[str]:
    """What is wrong with statistic ``stat`` (``running_mean`` or ``running_var``) of the
    norm's ``shape`` (None: not checked), or None."""
    if shape is not None and value.shape != shape:
        return (f'has shape {tuple(value.shape)}; the norm has {tuple(shape)} (one value per '
                'channel)')
    values = value.detach().double()
    bad = ~torch.isfinite(values)
    if bad.any():
        return (f'holds {int(bad.sum())} non-finite values (e.g. {values[bad][0].item()}); '
                'allowed: finite numbers')
    if stat == 'running_var' and (values < 0).any():
        return (f'holds {int((values < 0).sum())} negative values (e.g. '
                f'{values[values < 0][0].item():g}); allowed: variances >= 0')
    return None


def check_bn_state(state: BNState, source: str, model: Optional[nn.Module] = None) -> None:
    """Raise unless every statistic of one configuration's ``state`` is finite, every
    variance >= 0 and (with ``model``) ``state`` has exactly the model's batch norms with
    their shapes; ``source`` says where it comes from.

    Raises:
        KeyError: the batch norms of ``model`` and ``state`` differ (one is named).
        ValueError: a bad statistic (the norm and the statistic are named).
    """
    norms = None if model is None else _norms(model)
    if norms is not None:
        missing = [name for name in norms if name not in state]
        extra = [name for name in state if name not in norms]
        if missing or extra:
            raise KeyError(f'{source}: not the batch norms of {type(model).__name__}: '
                           + (f'no statistics for {missing[0]!r}' if missing
                              else f'the model has no batch norm {extra[0]!r}'))
    for name, pair in state.items():
        for stat, value in zip(('running_mean', 'running_var'), pair):
            problem = _problem(stat, value,
                               None if norms is None else getattr(norms[name], stat).shape)
            if problem is not None:
                raise ValueError(f'{source}: {name}.{stat} {problem}')


@torch.no_grad()
def load_bn_state(model: nn.Module, state: BNState,
                  source: str = 'the BN statistics') -> None:
    """Copy ``state`` into the running statistics of ``model``'s batch norms.

    Raises:
        KeyError, ValueError: as :func:`check_bn_state` (``source`` is named).
    """
    check_bn_state(state, source, model)
    for name, norm in _norms(model).items():
        mean, var = state[name]
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)


def calibrate_bn_stats(model: nn.Module, batches: Iterable[dict],
                       configs: Sequence[SubnetConfig], rescaler,
                       num_batches: int) -> Dict[SubnetConfig, BNState]:
    """Calibrate every configuration in turn (see :func:`calibrate_bn`) and keep its statistics.

    The model is left in eval mode at the last configuration, with its statistics.
    """
    if not configs:
        raise ValueError('calibrate_bn_stats needs at least one configuration')
    stats = {}
    for config in configs:
        calibrate_bn(model, batches, config, rescaler, num_batches)
        stats[config] = {name: (mean.cpu(), var.cpu()) for name, (mean, var) in
                         bn_state(model).items()}
    return stats


def save_bn_stats(path: str, stats: Dict[SubnetConfig, BNState], checkpoint: str) -> None:
    """Save per-configuration statistics to ``path`` (tensors and plain values only,
    through a temporary file), with the ``checkpoint`` fingerprint of the weights they
    were calibrated on (:func:`~mutualnet_mm.reliability.fingerprint.weights_fingerprint`).
    """
    entries = [dict(width=config.width, head_width=config.head_width, depth=config.depth,
                    scale=config.scale, frames=config.frames,
                    stats={name: (mean.cpu(), var.cpu()) for name, (mean, var) in state.items()})
               for config, state in stats.items()]
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = {'version': BN_STATS_VERSION, 'checkpoint': checkpoint, 'entries': entries}
    atomic_write(path, lambda temporary: torch.save(data, temporary))


def _entry_config(path: str, index: int, entry: object) -> SubnetConfig:
    """The configuration of one entry of a statistics file, checked."""
    if not isinstance(entry, dict) or any(key not in entry for key in _ENTRY_KEYS) or \
            not isinstance(entry['stats'], dict) or not all(
                isinstance(pair, (tuple, list)) and len(pair) == 2 and
                all(isinstance(t, Tensor) for t in pair) for pair in entry['stats'].values()):
        raise ValueError(f'BN statistics file {path!r}: entry {index} is not '
                         f'{{{", ".join(_ENTRY_KEYS)}}} with stats {{bn_name: (running_mean, '
                         'running_var)}}; regenerate the file: ' + REGENERATE_BN_STATS)
    return SubnetConfig.from_record(entry)


def load_bn_stats(path: str, checkpoint: Optional[str] = None,
                  checkpoint_name: str = 'the model',
                  model: Optional[nn.Module] = None) -> Dict[SubnetConfig, BNState]:
    """Load statistics saved by :func:`save_bn_stats` (``weights_only``).

    Args:
        path: The file.
        checkpoint: The fingerprint of the model they are for (``None``: no check).
        checkpoint_name: Where that model's weights come from, for messages.
        model: The model they are for: every entry must have its batch norms and their
            shapes (``None``: no check).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KeyError, ValueError: the file is not a statistics file, or an entry fails
            :func:`check_bn_state`, or (with ``checkpoint``) was calibrated on other
            weights or records none.
    """
    data = load_checkpoint_safely(path)
    if not isinstance(data, dict) or data.get('version') != BN_STATS_VERSION or \
            not isinstance(data.get('entries'), list):
        raise ValueError(f'{path!r} is not a mutualnet_mm BN statistics file (a dict with '
                         f'version {BN_STATS_VERSION}, "checkpoint" and a list of "entries", '
                         f'written by tools/calibrate_bn_stats.py)')
    stats = {}
    for index, entry in enumerate(data['entries']):
        config = _entry_config(path, index, entry)
        stats[config] = {name: tuple(pair) for name, pair in entry['stats'].items()}
        check_bn_state(stats[config], f'BN statistics file {path!r}, entry {index} '
                                      f'({config.name})', model)
    if checkpoint is not None:
        check_fingerprint(f'BN statistics file {path!r}', data.get('checkpoint'), checkpoint,
                          checkpoint_name, REGENERATE_BN_STATS)
    return stats
