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
from .subnet import SubnetConfig

#: Transforms that draw random numbers, besides every ``Random*`` type and the frame
#: samplers outside their test mode (:func:`is_random`), across mmcv, mmdet, mmpretrain
#: and mmaction2. Calibration drops them, or replaces them (random resizes and crops).
RANDOM_AUGMENTATIONS = frozenset((
    'Albu', 'Albumentations', 'AutoAugment', 'AutoContrast', 'BEiTMaskGenerator', 'Brightness',
    'CachedMixUp', 'CachedMosaic', 'Color', 'ColorJitter', 'ColorTransform', 'Contrast',
    'CopyPaste', 'Corrupt', 'CutOut', 'Cutout', 'EfficientNetRandomCrop', 'Equalize', 'Expand',
    'Flip', 'GaussianBlur', 'GeomTransform', 'ImgAug', 'InstaBoost', 'Invert', 'Lighting',
    'MAERandomResizedCrop', 'MinIoURandomCrop', 'MixUp', 'Mosaic', 'MultiScaleCrop',
    'MultiView', 'PhotoMetricDistortion', 'Posterize', 'PytorchVideoWrapper', 'RandAugment',
    'Rotate', 'Sharpness', 'Shear', 'ShearX', 'ShearY', 'SimMIMMaskGenerator', 'Solarize',
    'SolarizeAdd', 'TorchVisionWrapper', 'TorchVisonTransformWrapper', 'Translate',
    'TranslateX', 'TranslateY', 'YOLOXHSVRandomAug'))
#: Random resizes, replaced by a resize to their largest scale.
RANDOM_RESIZES = ('RandomResize', 'RandomChoiceResize')
#: Frame samplers: random outside their test mode, which calibration sets.
FRAME_SAMPLERS = ('SampleFrames', 'DenseSampleFrames', 'SampleAVAFrames', 'UniformSample',
                  'UniformSampleFrames', 'MMUniformSampleFrames')
#: The frame samplers that take ``temporal_jitter`` (random even in test mode).
JITTERED_SAMPLERS = ('SampleFrames', 'DenseSampleFrames')
#: The short edge of mmpretrain's test-time resize, per pixel of its centre crop (256/224).
RESIZE_PER_CROP = 256 / 224
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


def _random_type(name: str) -> bool:
    return name.startswith('Random') or name in RANDOM_AUGMENTATIONS


def is_random(transform: dict) -> bool:
    """Whether a pipeline step (a transform config) draws random numbers.

    The one rule calibration follows: every ``Random*`` type, the types of
    :data:`RANDOM_AUGMENTATIONS`, frame samplers outside their test mode or with temporal
    jitter, and wrappers that run any of these.
    """
    name = _type_name(transform)
    if name in FRAME_SAMPLERS:
        return not transform.get('test_mode', False) or bool(transform.get('temporal_jitter'))
    return _random_type(name) or any(is_random(step) for step in _nested(transform))


def _largest(scales: Any) -> Any:
    """The largest of several ``(w, h)`` scales, or the scale itself if it is one."""
    if isinstance(scales, (list, tuple)) and scales and isinstance(scales[0], (list, tuple)):
        return max(scales, key=lambda s: (s[0] * s[1], tuple(s)))
    return scales


def _centre_crop(transform: dict) -> List[dict]:
    """An mmpretrain ``RandomResizedCrop(scale=S)`` as its test-time counterpart.

    mmpretrain's test pipelines: ``ResizeEdge`` of the short edge to ``S * 256 / 224``
    (256 for 224), then ``CenterCrop`` to ``S``; the crop keeps the training crop's size.
    """
    prefix = str(transform['type']).rpartition('.')[0]
    scope = f'{prefix}.' if prefix else ''
    scale = transform['scale']  # an int, or (h, w)
    height, width = (scale, scale) if isinstance(scale, int) else scale
    resize = dict(type=f'{scope}ResizeEdge', scale=int(max(height, width) * RESIZE_PER_CROP),
                  edge='short')
    resize.update({k: transform[k] for k in ('backend', 'interpolation') if k in transform})
    crop_size = scale if isinstance(scale, int) else (width, height)
    return [resize, dict(type=f'{scope}CenterCrop', crop_size=crop_size)]


def deterministic_pipeline(pipeline: List[dict]) -> List[dict]:
    """A training pipeline without its random steps (:func:`is_random`), for BN calibration.

    Random resizes become a resize to their largest scale; mmpretrain's
    ``RandomResizedCrop(scale=S)`` becomes the test-time resize and centre crop to ``S``
    (:func:`_centre_crop`), so that calibration batches have the training crop's size;
    frame samplers take their test-mode clips without temporal jitter; wrappers keep
    their deterministic steps; every other random step is dropped.
    """
    steps = []
    for transform in copy.deepcopy(list(pipeline)):
        name = _type_name(transform)
        if name in RANDOM_RESIZES:
            scale = transform.pop('scale' if name == 'RandomResize' else 'scales', None)
            resize = transform.pop('resize_type', 'Resize')
            transform.pop('ratio_range', None)
            transform.update(type=resize, scale=_largest(scale))
        elif name == 'RandomResizedCrop' and 'scale' in transform:
            steps.extend(_centre_crop(transform))
            continue
        elif name in FRAME_SAMPLERS:
            transform['test_mode'] = True
            if name in JITTERED_SAMPLERS:
                transform['temporal_jitter'] = False
        elif _random_type(name):
            continue
        elif _nested(transform):
            transform['transforms'] = deterministic_pipeline(transform['transforms'])
        steps.append(transform)
    return steps


def deterministic_dataset(dataset_cfg: Any) -> Any:
    """``dataset_cfg`` with :func:`deterministic_pipeline` applied at every level."""
    if not isinstance(dataset_cfg, dict):
        return dataset_cfg
    dataset_cfg = dict(dataset_cfg)
    if isinstance(dataset_cfg.get('pipeline'), (list, tuple)):
        dataset_cfg['pipeline'] = deterministic_pipeline(dataset_cfg['pipeline'])
    if 'dataset' in dataset_cfg:  # RepeatDataset, ClassBalancedDataset, ...
        dataset_cfg['dataset'] = deterministic_dataset(dataset_cfg['dataset'])
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):  # ConcatDataset
        dataset_cfg['datasets'] = [deterministic_dataset(d) for d in dataset_cfg['datasets']]
    return dataset_cfg


def build_calibration_loader(loader_cfg: dict, seed: int = CALIBRATION_SEED) -> DataLoader:
    """The training dataloader as BN calibration reads it: a fixed draw, no augmentation.

    The dataset's pipelines lose their random steps (:func:`deterministic_pipeline`) and
    the sampler shuffles with ``seed`` (unless its config sets one), whatever the
    training seed: every iteration of the loader (every configuration, every run)
    yields the same batches. Build it in the config's registry scope.

    Args:
        loader_cfg: The ``train_dataloader`` config.
        seed: The seed of the sampler and the workers.
    """
    loader_cfg = copy.deepcopy(loader_cfg)
    loader_cfg['persistent_workers'] = False
    loader_cfg['dataset'] = deterministic_dataset(loader_cfg['dataset'])
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
    set_width(module, config.width, config.head_width)
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
