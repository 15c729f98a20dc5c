"""The adaptive model of a config: built, loaded from a checkpoint, with its calibration data."""
import copy
import os
from typing import Optional, Union

from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from torch import nn
from torch.utils.data import DataLoader

from ..engine.calibration import CALIBRATION_SEED, build_calibration_loader
from ..engine.rescale import build_rescaler, default_rescaler
from ..reliability.checkpoint import load_checkpoint_safely
from ..reliability.state_dict import check_state_dict_fits
from ..tasks import Task


def load_config(config: Union[str, os.PathLike, Config]) -> Config:
    """A :class:`Config` from a path (or the config itself)."""
    if isinstance(config, Config):
        return config
    path = os.fspath(config)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    return Config.fromfile(path)


def config_scope(cfg: Config) -> str:
    """The registry scope of a config (``default_scope``, else ``'mmdet'``)."""
    return cfg.get('default_scope') or 'mmdet'


def build_adaptive_model(cfg: Config, checkpoint: Optional[str] = None,
                         device: str = 'cpu') -> nn.Module:
    """Build ``cfg.model`` in the config's scope, load ``checkpoint``, move it, set eval.

    A top-level ``data_preprocessor`` (mmpretrain's configs) is the model's unless the
    model sets its own, as mmengine's ``Runner`` does it.

    Raises:
        KeyError, ValueError: the checkpoint does not hold this model's weights (see
            :func:`load_adaptive_weights`).
    """
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:  # top level in mmpretrain's configs
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    with DefaultScope.overwrite_default_scope(config_scope(cfg)):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        load_adaptive_weights(model, checkpoint)
    return model.to(device).eval()


def load_adaptive_weights(model: nn.Module, checkpoint: str) -> dict:
    """Load a checkpoint (``weights_only``) that must match ``model`` exactly.

    Returns:
        The checkpoint's ``meta`` (empty if it has none).

    Raises:
        StateDictMismatchError: a key of the model is missing from the checkpoint, or the
            checkpoint has a key the model lacks (a ``KeyError``; the first one is named).
        ValueError: a tensor has another shape than the model's (named).
    """
    loaded = load_checkpoint_safely(checkpoint)
    state_dict = loaded.get('state_dict', loaded) if isinstance(loaded, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f'{checkpoint!r} holds no state dict')
    check_state_dict_fits(model, state_dict, f'checkpoint {checkpoint!r}')
    model.load_state_dict({k.removeprefix('module.'): v for k, v in state_dict.items()},
                          strict=False)  # everything but num_batches_tracked was checked
    meta = loaded.get('meta') if 'state_dict' in loaded else None
    return meta if isinstance(meta, dict) else {}


def calibration_loader(cfg: Config, seed: int = CALIBRATION_SEED,
                       task: Optional[Task] = None) -> DataLoader:
    """The config's training dataloader as BN calibration reads it for the model's
    ``task`` (see :func:`~mutualnet_mm.engine.calibration.build_calibration_loader`)."""
    with DefaultScope.overwrite_default_scope(config_scope(cfg)):
        return build_calibration_loader(cfg.train_dataloader, seed, task)


def task_rescaler(model: nn.Module, cfg: Optional[Config] = None):
    """The batch rescaler of the config's evaluation (``test_cfg.rescaler``), else the task's."""
    test_cfg = (cfg.get('test_cfg') if cfg is not None else None) or {}
    if test_cfg.get('rescaler') is not None:
        return build_rescaler(copy.deepcopy(test_cfg['rescaler']))
    return build_rescaler(default_rescaler(model))
