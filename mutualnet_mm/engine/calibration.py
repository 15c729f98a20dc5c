"""Post-statistics batch-norm calibration for one configuration."""
from typing import Iterable

import torch
import torch.distributed as dist
from mmengine.dist import get_world_size
from mmengine.model import is_model_wrapper
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..ops import reset_bn_statistics, set_width
from .subnet import SubnetConfig


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable[dict], config: SubnetConfig, rescaler,
                 num_batches: int) -> int:
    """Recompute every batch norm's running statistics at ``config``.

    Statistics are reset and accumulated as a cumulative average over ``num_batches``
    batches (each preprocessed without training-time batch augmentation and rescaled to
    the configuration), with the rest of the model in eval mode; under DDP they are
    averaged across processes. The model is left in eval mode at ``config.width``.

    Args:
        model: The model (or its wrapper).
        batches: An iterable of raw data batches (e.g. the training dataloader).
        config: The configuration to calibrate.
        rescaler: The task's batch rescaler.
        num_batches: How many batches to use (0: keep the current statistics).

    Returns:
        The number of batches used.
    """
    module = model.module if is_model_wrapper(model) else model
    set_width(module, config.width)
    module.eval()
    if num_batches <= 0:
        return 0
    momenta = {m: m.momentum for m in module.modules() if isinstance(m, _BatchNorm)}
    reset_bn_statistics(module, cumulative=True)
    named_norms = [(n, m) for n, m in module.named_modules() if isinstance(m, _BatchNorm)]
    norms = [m for _, m in named_norms]
    for norm in norms:
        norm.train()
    # Where every norm sits in the backbone or neck, running those suffices.
    features_only = hasattr(module, 'extract_feat') and all(
        n.split('.')[0] in ('backbone', 'neck') for n, _ in named_norms)
    used = 0
    try:
        for data in batches:
            if used >= num_batches:
                break
            batch = module.data_preprocessor(data, False)
            inputs, samples = rescaler(batch['inputs'], batch['data_samples'], config)
            if features_only:
                module.extract_feat(inputs)
            else:
                module(inputs, samples, mode='tensor')
            used += 1
    finally:
        module.eval()
        for norm, momentum in momenta.items():  # later training keeps its own averaging
            norm.momentum = momentum
    if used == 0:
        raise ValueError('BN calibration got no batches: the calibration dataloader is empty')
    if get_world_size() > 1:
        for norm in norms:
            if norm.running_mean is not None:
                for stats in (norm.running_mean, norm.running_var):
                    dist.all_reduce(stats)
                    stats.div_(get_world_size())
    return used
