"""One call to run an adaptive model at a configuration with mmdet's / mmaction2's own APIs.

Example:
    >>> from mmdet.apis import inference_detector, init_detector
    >>> from mutualnet_mm.apis import prepare
    >>> model = init_detector('configs/maskrcnn_mutual_r50.py', 'epoch_12.pth', device='cpu')
    >>> prepare(model, width=0.5, scale=0.75, calibration='work_dirs/m/bn_stats.pth')
    >>> result = inference_detector(model, 'demo.jpg')  # what the exported w0.5_s0.75 gives
"""
import copy
import os
from typing import Iterable, Optional, Union

from mmengine.config import Config
from torch import nn

from .deploy.adaptive import calibration_loader, load_config, task_rescaler, unwrap
from .deploy.bn_stats import load_bn_state, load_bn_stats
from .deploy.export import scale_test_pipelines
from .engine.calibration import calibrate_bn
from .engine.subnet import SubnetConfig, check_scales
from .evaluation.fingerprint import weights_fingerprint
from .ops import set_width

#: Where :func:`prepare` keeps the model's config as it was before the first call.
_BASE_CFG = '_mutualnet_base_cfg'

Calibration = Union[str, os.PathLike, Config, Iterable[dict]]


def prepare(model: nn.Module, width: float, scale: float = 1.0,
            calibration: Optional[Calibration] = None, frames: Optional[int] = None,
            num_batches: int = 8, head_width: Optional[float] = None) -> SubnetConfig:
    """Set ``model`` to ``(width, scale[, frames])`` with that configuration's BN statistics.

    After it, ``inference_detector(model, ...)`` / ``inference_recognizer(model, ...)``
    compute what the exported stock model of the configuration computes: the width is
    set, the batch norms hold the configuration's statistics and ``model.cfg``'s test
    pipeline resizes (and samples frames) for the configuration.

    Args:
        model: An adaptive model from ``init_detector`` / ``init_recognizer`` (it carries
            its config as ``model.cfg``).
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

    Returns:
        The configuration.

    Raises:
        ValueError: a width or scale outside what is allowed, or a model without ``cfg``.
        KeyError: the statistics file lacks the configuration (the message lists those
            it holds).
        ValueError: the statistics file was calibrated on other weights.
    """
    module = unwrap(model)
    base_cfg = getattr(module, _BASE_CFG, None)
    base_cfg = getattr(module, 'cfg', None) if base_cfg is None else base_cfg
    if not isinstance(base_cfg, Config):
        raise ValueError('prepare needs the model of init_detector / init_recognizer (with '
                         'its config as model.cfg)')
    set_width(module, width, head_width)  # checks both widths
    scale = check_scales([scale], 'prepare')[0]
    config = SubnetConfig(float(width), scale, frames,
                          None if head_width is None else float(head_width))
    if isinstance(calibration, (str, os.PathLike)) and \
            not os.fspath(calibration).endswith('.py'):
        stats = load_bn_stats(os.fspath(calibration), weights_fingerprint(module),
                              'the model', module)
        if config not in stats:
            raise KeyError(f'{os.fspath(calibration)!r} holds no BN statistics of '
                           f'{config.name}; it holds {[c.name for c in stats]}')
        set_width(module, config.width, config.head_width)
        load_bn_state(module, stats[config])
    else:
        source = base_cfg if calibration is None else calibration
        batches = calibration_loader(load_config(source)) \
            if isinstance(source, (str, os.PathLike, Config)) else source
        calibrate_bn(module, batches, config, task_rescaler(module, base_cfg), num_batches)
    module.eval()
    setattr(module, _BASE_CFG, base_cfg)
    scaled = copy.deepcopy(base_cfg)
    scale_test_pipelines(scaled, config)
    module.cfg = scaled
    return config


__all__ = ['prepare']
