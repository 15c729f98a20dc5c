"""Post-statistics batch-norm calibration for one configuration, and the data it reads."""
import copy
from typing import Any, Callable, Iterable, List, Optional

import torch
import torch.distributed as dist
from mmengine.dist import get_world_size
from mmengine.runner import Runner
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from ..models.wrappers import unwrap
from ..ops import reset_bn_statistics, set_width
from ..tasks import Task, any_task
from .subnet import SubnetConfig

#: The seed of the calibration draw when none is given.
CALIBRATION_SEED = 0


def _type_name(transform: dict) -> str:
    return str(transform['type']).rpartition('.')[2]


def _nested(transform: dict) -> List[dict]:
    """The steps a wrapper (``KeyMapper``, ``ApplyToList``, ...) runs, if any."""
    steps = transform.get('transforms')
    if isinstance(steps, (list, tuple)) and all(isinstance(s, dict) for s in steps):
        return list(steps)
    return []


def is_random(transform: dict, task: Optional[Task] = None) -> bool:
    """Whether a pipeline step (a transform config) draws random numbers.

    The one rule calibration follows: every ``Random*`` type, the task's random
    transforms, its frame samplers outside their test mode or with temporal jitter, and
    wrappers that run any of these. Without a task, every registered task's declarations
    count (:func:`~mutualnet_mm.tasks.any_task`).
    """
    task = task or any_task()
    name = _type_name(transform)
    if name in task.frame_samplers:
        return not transform.get('test_mode', False) or bool(transform.get('temporal_jitter'))
    return (name.startswith('Random') or name in task.random
            or any(is_random(step, task) for step in _nested(transform)))


def _largest(scales: Any) -> Any:
    """The largest of several ``(w, h)`` scales, or the scale itself if it is one."""
    if isinstance(scales, (list, tuple)) and scales and isinstance(scales[0], (list, tuple)):
        return max(scales, key=lambda s: (s[0] * s[1], tuple(s)))
    return scales


def _centre_crop(transform: dict, resize_per_crop: float) -> List[dict]:
    """A random resized crop of size ``S`` as its test-time counterpart.

    The test-time resize of the short edge to ``S * resize_per_crop``, then a centre
    crop to ``S`` (mmpretrain's test pipelines: 256, then 224): the crop keeps the
    training crop's size.
    """
    prefix = str(transform['type']).rpartition('.')[0]
    scope = f'{prefix}.' if prefix else ''
    scale = transform['scale']  # an int, or (h, w)
    height, width = (scale, scale) if isinstance(scale, int) else scale
    resize = dict(type=f'{scope}ResizeEdge', scale=int(max(height, width) * resize_per_crop),
                  edge='short')
    resize.update({k: transform[k] for k in ('backend', 'interpolation') if k in transform})
    crop_size = scale if isinstance(scale, int) else (width, height)
    return [resize, dict(type=f'{scope}CenterCrop', crop_size=crop_size)]


def deterministic_pipeline(pipeline: List[dict], task: Optional[Task] = None) -> List[dict]:
    """A training pipeline without its random steps (:func:`is_random`), for BN calibration.

    Random resizes become a resize to their largest scale; random resized crops of size
    ``S`` become the test-time resize and centre crop to ``S`` (:func:`_centre_crop`), so
    that calibration batches have the training crop's size; frame samplers take their
    test-mode clips without temporal jitter; wrappers keep their deterministic steps;
    every other random step is dropped. ``task`` declares which is which (default: every
    registered task's declarations).
    """
    task = task or any_task()
    steps = []
    for transform in copy.deepcopy(list(pipeline)):
        name = _type_name(transform)
        if name in task.random_resizes:
            scale = transform.pop(task.random_resizes[name], None)
            resize = transform.pop('resize_type', 'Resize')
            transform.pop('ratio_range', None)
            transform.update(type=resize, scale=_largest(scale))
        elif name in task.random_resized_crops and 'scale' in transform:
            steps.extend(_centre_crop(transform, task.random_resized_crops[name]))
            continue
        elif name in task.frame_samplers:
            transform['test_mode'] = True
            if name in task.jittered_samplers:
                transform['temporal_jitter'] = False
        elif is_random(dict(type=name), task):
            continue
        elif _nested(transform):
            transform['transforms'] = deterministic_pipeline(transform['transforms'], task)
        steps.append(transform)
    return steps


def deterministic_dataset(dataset_cfg: Any, task: Optional[Task] = None) -> Any:
    """``dataset_cfg`` with :func:`deterministic_pipeline` applied at every level."""
    if not isinstance(dataset_cfg, dict):
        return dataset_cfg
    dataset_cfg = dict(dataset_cfg)
    if isinstance(dataset_cfg.get('pipeline'), (list, tuple)):
        dataset_cfg['pipeline'] = deterministic_pipeline(dataset_cfg['pipeline'], task)
    if 'dataset' in dataset_cfg:  # RepeatDataset, ClassBalancedDataset, ...
        dataset_cfg['dataset'] = deterministic_dataset(dataset_cfg['dataset'], task)
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):  # ConcatDataset
        dataset_cfg['datasets'] = [deterministic_dataset(d, task)
                                   for d in dataset_cfg['datasets']]
    return dataset_cfg


def build_calibration_loader(loader_cfg: dict, seed: int = CALIBRATION_SEED,
                             task: Optional[Task] = None) -> DataLoader:
    """The ``train_dataloader`` config ``loader_cfg`` as BN calibration reads it.

    The dataset's pipelines lose their random steps (:func:`deterministic_pipeline`, by
    ``task``'s declarations) and the sampler and workers take ``seed`` (unless the config
    sets one): every iteration of the loader, in every run, yields the same batches.
    Build it in the config's registry scope.
    """
    loader_cfg = copy.deepcopy(loader_cfg)
    loader_cfg['persistent_workers'] = False
    loader_cfg['dataset'] = deterministic_dataset(loader_cfg['dataset'], task)
    return Runner.build_dataloader(loader_cfg, seed=seed)


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable[dict], config: SubnetConfig, rescaler,
                 num_batches: int, after_batch: Optional[Callable[[int], Any]] = None) -> int:
    """Recompute every batch norm's running statistics at ``config``.

    Statistics are reset and accumulated as a cumulative average over ``num_batches``
    batches (each preprocessed without training-time batch augmentation and rescaled to
    the configuration), with the rest of the model in eval mode; under DDP they are
    averaged across processes. The model is left in eval mode at the configuration's widths.

    Args:
        model: The model (or its wrapper).
        batches: An iterable of raw data batches (e.g. the training dataloader).
        config: The configuration to calibrate.
        rescaler: The task's batch rescaler.
        num_batches: How many batches to use (0: keep the current statistics).
        after_batch: Called as ``after_batch(batch_idx=i)`` once batch ``i`` is used.

    Returns:
        The number of batches used.
    """
    module = unwrap(model)
    set_width(module, config.width, config.head_width, config.depth)
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
            if after_batch is not None:
                after_batch(batch_idx=used - 1)
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
