"""Batch-norm statistics per configuration: calibrate once, swap in at run time.

A configuration's running statistics are only valid for it (they depend on the width and
the input scale), so a model that switches configurations at run time keeps one set per
configuration and swaps it in: a copy of the buffers, no data needed.
"""
import os
from typing import Dict, Iterable, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine.calibration import calibrate_bn
from ..engine.checkpoint import load_checkpoint_safely
from ..engine.subnet import SubnetConfig

BN_STATS_VERSION = 1

#: ``{bn_name: (running_mean, running_var)}`` of one configuration.
BNState = Dict[str, Tuple[Tensor, Tensor]]


def _norms(model: nn.Module) -> Dict[str, _BatchNorm]:
    return {name: m for name, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats}


def bn_state(model: nn.Module) -> BNState:
    """A copy of the running statistics of every batch norm of ``model``."""
    return {name: (m.running_mean.detach().clone(), m.running_var.detach().clone())
            for name, m in _norms(model).items()}


@torch.no_grad()
def load_bn_state(model: nn.Module, state: BNState) -> None:
    """Copy ``state`` into the running statistics of ``model``'s batch norms.

    Raises:
        KeyError: the batch norms of ``model`` and ``state`` differ (one is named).
        ValueError: a statistic has another shape than the norm's (named).
    """
    norms = _norms(model)
    missing = [name for name in norms if name not in state]
    extra = [name for name in state if name not in norms]
    if missing or extra:
        raise KeyError(f'BN statistics do not fit {type(model).__name__}: '
                       + (f'no statistics for {missing[0]!r}' if missing
                          else f'the model has no batch norm {extra[0]!r}'))
    for name, norm in norms.items():
        mean, var = state[name]
        if mean.shape != norm.running_mean.shape:
            raise ValueError(f'BN statistics of {name!r} have shape {tuple(mean.shape)}, '
                             f'the norm has {tuple(norm.running_mean.shape)}')
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


def save_bn_stats(path: str, stats: Dict[SubnetConfig, BNState]) -> None:
    """Save per-configuration statistics to ``path`` (tensors and plain values only)."""
    entries = [dict(width=config.width, scale=config.scale, frames=config.frames,
                    stats={name: (mean.cpu(), var.cpu()) for name, (mean, var) in state.items()})
               for config, state in stats.items()]
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    torch.save({'version': BN_STATS_VERSION, 'entries': entries}, path)


def load_bn_stats(path: str) -> Dict[SubnetConfig, BNState]:
    """Load statistics saved by :func:`save_bn_stats` (``weights_only``)."""
    data = load_checkpoint_safely(path)
    if not isinstance(data, dict) or data.get('version') != BN_STATS_VERSION:
        raise ValueError(f'{path!r} is not a mutualnet_mm BN statistics file (version '
                         f'{BN_STATS_VERSION}; written by tools/calibrate_bn_stats.py)')
    return {SubnetConfig(e['width'], e['scale'], e['frames']):
            {name: tuple(pair) for name, pair in e['stats'].items()} for e in data['entries']}
