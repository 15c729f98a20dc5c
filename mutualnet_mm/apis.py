"""One call to run an adaptive model at a configuration with the OpenMMLab APIs.

Example:
    >>> from mmdet.apis import DetInferencer, inference_detector, init_detector
    >>> from mutualnet_mm.apis import prepare
    >>> model = init_detector('configs/maskrcnn_mutual_r50.py', 'epoch_12.pth', device='cpu')
    >>> prepare(model, width=0.5, scale=0.75, calibration='work_dirs/m/bn_stats.pth')
    >>> result = inference_detector(model, 'demo.jpg')  # what the exported w0.5_s0.75 gives
    >>> inferencer = DetInferencer('configs/maskrcnn_mutual_r50.py', 'epoch_12.pth')
    >>> prepare(inferencer, width=0.5, scale=0.75)  # its model and its pipeline
    >>> result = inferencer('demo.jpg')
"""
import copy
import os
from typing import Any, Iterable, Optional, Union

from mmengine.config import Config
from torch import nn

from .deploy.adaptive import calibration_loader, load_config, task_rescaler
from .deploy.bn_stats import load_bn_state, load_bn_stats
from .deploy.pipelines import scale_test_pipelines
from .engine.calibration import calibrate_bn
from .engine.subnet import SubnetConfig, check_scales
from .models.wrappers import unwrap
from .ops import set_width
from .reliability.fingerprint import weights_fingerprint
from .tasks import Task, task_of

#: Where :func:`prepare` keeps the model's config as it was before the first call.
_BASE_CFG = '_mutualnet_base_cfg'
#: Where the models carry their config: mmdet's ``init_detector``, mmaction2's
#: ``init_recognizer`` and mmengine's inferencers as ``cfg``, mmpretrain's ``get_model``
#: and ``init_model`` as ``_config``.
_CONFIG_ATTRS = ('cfg', '_config')

Calibration = Union[str, os.PathLike, Config, Iterable[dict]]


def prepare(target: Any, width: float, scale: float = 1.0,
            calibration: Optional[Calibration] = None, frames: Optional[int] = None,
            num_batches: int = 8, head_width: Optional[float] = None,
            depth: Optional[float] = None) -> SubnetConfig:
    """Set a model (or an inferencer's) to ``(width, scale[, frames])`` with that
    configuration's BN statistics.

    Afterwards the model (through ``inference_detector``, ``inference_recognizer`` or
    mmpretrain's ``inference_model``) or the inferencer computes what the configuration's
    exported stock model computes. Pass an inferencer itself, not its ``model``: its
    pipeline, built from the config, is rebuilt for the configuration too.

    Args:
        target: An adaptive model from ``init_detector``, ``init_recognizer`` or
            mmpretrain's ``get_model`` / ``init_model`` (it carries its config as
            ``model.cfg`` or ``model._config``), or an inferencer holding one: mmdet's
            ``DetInferencer``, mmpretrain's ``ImageClassificationInferencer``, mmaction2's
            ``ActionRecogInferencer`` or ``MMAction2Inferencer``.
        width: The width multiplier, within the model's range.
        scale: The input scale.
        calibration: Where the statistics come from: a BN statistics file written by
            ``tools/calibrate_bn_stats.py`` (holding this configuration), a config (path
            or :class:`Config`) whose training dataloader calibrates, or an iterable of
            raw training batches. Default: the model's own config.
        frames: Frames per clip (video), or None.
        num_batches: Batches to calibrate on (not used with a statistics file).
        head_width: The width of the neck and heads where the model was trained with
            decoupled widths (``None``: they follow ``width``).
        depth: The depth of a model with one (RTMDet's CSPNeXt backbone and neck).

    Returns:
        The configuration.

    Raises:
        ValueError: a width or scale outside what is allowed, a model without its config,
            or a statistics file calibrated on other weights.
        KeyError: the statistics file lacks the configuration (the message lists those
            it holds).
    """
    inferencer = _inferencer_of(target)
    module = unwrap(target if inferencer is None else inferencer.model)
    attr = next((a for a in _CONFIG_ATTRS if isinstance(getattr(module, a, None), Config)),
                None)
    if attr is None:
        raise ValueError('prepare needs a model of init_detector / init_recognizer / '
                         "mmpretrain's get_model (with its config as model.cfg or "
                         'model._config), or an inferencer holding one')
    base_cfg = getattr(module, _BASE_CFG, None)
    base_cfg = getattr(module, attr) if base_cfg is None else base_cfg
    set_width(module, width, head_width, depth)  # checks both widths and the depth
    scale = check_scales([scale], 'prepare')[0]
    config = SubnetConfig.from_record(dict(width=width, scale=scale, frames=frames,
                                           head_width=head_width, depth=depth))
    if isinstance(calibration, (str, os.PathLike)) and \
            not os.fspath(calibration).endswith('.py'):
        stats = load_bn_stats(os.fspath(calibration), weights_fingerprint(module),
                              'the model', module)
        if config not in stats:
            raise KeyError(f'{os.fspath(calibration)!r} holds no BN statistics of '
                           f'{config.name}; it holds {[c.name for c in stats]}')
        set_width(module, config.width, config.head_width, config.depth)
        load_bn_state(module, stats[config])
    else:
        source = base_cfg if calibration is None else calibration
        batches = calibration_loader(load_config(source), task=task_of(module)) \
            if isinstance(source, (str, os.PathLike, Config)) else source
        calibrate_bn(module, batches, config, task_rescaler(module, base_cfg), num_batches)
    module.eval()
    setattr(module, _BASE_CFG, base_cfg)
    scaled = copy.deepcopy(base_cfg)
    task = task_of(module)
    _undo_inferencer_edits(scaled, task)
    scale_test_pipelines(scaled, config, task)
    setattr(module, attr, scaled)
    if inferencer is not None:
        pipeline_cfg = copy.deepcopy(scaled)  # the inferencers edit the config they read
        inferencer.pipeline = inferencer._init_pipeline(pipeline_cfg)
        for name in ('cfg', 'config'):  # mmengine's inferencers / mmpretrain's
            if isinstance(getattr(inferencer, name, None), Config):
                setattr(inferencer, name, pipeline_cfg)
    return config


def _inferencer_of(target: Any) -> Any:
    """The inferencer that builds ``target``'s pipeline (``None``: ``target`` is a model)."""
    if isinstance(target, nn.Module):
        return None
    inner = getattr(target, 'actionrecog_inferencer', None)  # MMAction2Inferencer
    inferencer = target if inner is None else inner
    if not all(hasattr(inferencer, a) for a in ('model', 'pipeline', '_init_pipeline')):
        raise ValueError(f'prepare takes a model or an OpenMMLab inferencer, got '
                         f'{type(target).__name__}')
    return inferencer


def _undo_inferencer_edits(cfg: Config, task: Task) -> None:
    """Restore the test pipeline an inferencer edited as it read it (in place): the
    edits the task declares (:mod:`mutualnet_mm.tasks`)."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    pipeline = dataset.get('pipeline') if isinstance(dataset, dict) else None
    if not isinstance(pipeline, list):
        return
    pipeline[:] = [t for t in pipeline if t.get('type') not in task.inferencer_inserted]
    for transform in pipeline:
        transform['type'] = task.inferencer_renamed.get(transform.get('type'),
                                                        transform.get('type'))


__all__ = ['prepare']
