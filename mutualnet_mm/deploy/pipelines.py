"""Test pipelines resized to a configuration: its scale, and its frames for video."""
from typing import Any, List, Optional, Set

from ..engine.subnet import SubnetConfig
from ..tasks import Task, any_task, task_of_config


def scale_test_pipelines(cfg: dict, config: SubnetConfig, task: Optional[Task] = None) -> int:
    """Resize the test pipelines of ``cfg`` (a plain dict) to ``config`` in place.

    The scales (and scale factors) of the task's resizes and the sizes of its crops are
    multiplied by the scale; with ``config.frames``, its frame counter (``SampleFrames``)
    takes that many frames over the same span. ``task`` declares them (default: the
    config's model's, :mod:`mutualnet_mm.tasks`; without a model, every task's). Covers
    ``test_dataloader``, ``val_dataloader`` and the top-level ``test_pipeline``.

    Returns:
        How many transforms were changed.

    Raises:
        ValueError: the scale is not 1 and no transform resizes, or ``config.frames``
            is set and no transform samples frames.
    """
    task = task or (task_of_config(cfg) if cfg.get('model') else any_task())
    seen: Set[int] = set()
    resized = sampled = 0
    pipelines = [cfg.get('test_pipeline')] + [
        pipeline for key in ('test_dataloader', 'val_dataloader')
        for pipeline in _pipelines((cfg.get(key) or {}).get('dataset'))]  # None: no loader
    for pipeline in pipelines:
        for transform in pipeline or ():
            if not isinstance(transform, dict) or id(transform) in seen:
                continue
            seen.add(id(transform))
            kind = str(transform.get('type', '')).rpartition('.')[2]
            if config.scale != 1.0 and _scale_transform(task, kind, transform, config.scale):
                resized += 1
            if config.frames is not None and kind == task.frame_counter:
                clip_len = transform['clip_len']
                interval = transform.get('frame_interval', 1)
                transform['frame_interval'] = max(1, round(interval * clip_len / config.frames))
                transform['clip_len'] = config.frames
                sampled += 1
    if config.scale != 1.0 and not resized:
        raise ValueError(f'cannot export scale {config.scale:g}: the test pipeline has no '
                         'Resize (or crop) to scale')
    if config.frames is not None and not sampled:
        raise ValueError(f'cannot export {config.frames} frames: the test pipeline has no '
                         f'{task.frame_counter or "frame sampler"}')
    return resized + sampled


def _pipelines(dataset: Any) -> List[list]:
    if not isinstance(dataset, dict):
        return []
    found = [dataset['pipeline']] if isinstance(dataset.get('pipeline'), list) else []
    found += _pipelines(dataset.get('dataset'))
    for inner in dataset.get('datasets') or ():
        found += _pipelines(inner)
    return found


def _scaled(value: Any, scale: float) -> Any:
    """Sizes (one or a sequence) times ``scale``, rounded; -1 (keep the ratio) stays."""
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, scale) for v in value)
    return max(1, round(value * scale)) if value > 0 else value


def _scale_transform(task: Task, kind: str, transform: dict, scale: float) -> bool:
    if kind in task.resizes and transform.get('scale') is not None:
        transform['scale'] = _scaled(transform['scale'], scale)
        return True
    if kind in task.resizes and transform.get('scale_factor') is not None:
        factor = transform['scale_factor']
        transform['scale_factor'] = type(factor)(f * scale for f in factor) \
            if isinstance(factor, (list, tuple)) else factor * scale
        return True
    if kind in task.crops and 'crop_size' in transform:
        transform['crop_size'] = _scaled(transform['crop_size'], scale)
        return True
    return False
