"""Export one configuration of an adaptive model as a stock OpenMMLab model.

The result is a standalone mmengine config (stock backbone, neck and head types with the
channel counts of the configuration, the test pipeline resized to its scale, stock loops)
and a checkpoint of the sliced weights with the configuration's calibrated BN statistics.
Stock mmdet / mmaction2 load and run both without ``mutualnet_mm``.

On the same input tensor the exported model computes exactly what the adaptive model
computes at the configuration. The inputs differ slightly in practice: at scale ``s`` the
adaptive model resizes the preprocessed (normalized, padded) batch by ``s``, the exported
model resizes the image in its pipeline, to the same size up to rounding.
"""
import copy
import io
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from torch import Tensor, nn

from ..engine.calibration import calibrate_bn
from ..engine.subnet import SubnetConfig, check_scales
from ..models.stock import build_stock
from ..models.wrappers import unwrap
from ..ops import set_width, slice_state_dict
from ..reliability.fileio import check_replaceable, replaced_directory, write_error
from .adaptive import task_rescaler
from .stock_model import stock_model_config, stock_runtime_config


def export_config_and_weights(model: nn.Module, cfg: Config,
                              config: SubnetConfig) -> Tuple[Config, Dict[str, Tensor]]:
    """The stock config and state dict of ``model`` (the adaptive model or its wrapper,
    left at ``config``) built from its whole config ``cfg``.

    The model's BN statistics must already be calibrated for ``config`` (see
    :func:`export_subnet`, which does it); they are sliced with the weights.

    Returns:
        ``(stock_cfg, state_dict)``: the standalone config, and the weights on the CPU
        with exactly the stock model's names and shapes.
    """
    module = unwrap(model)
    check_scales([config.scale], 'config')
    model_cfg = stock_model_config(module, cfg.model, config.width, config.head_width,
                                   config.depth)
    stock_cfg = stock_runtime_config(cfg, model_cfg, config)
    stock = build_stock(stock_cfg.model, stock_cfg.default_scope, 'meta')
    state_dict = slice_state_dict(module, stock.state_dict())
    return stock_cfg, OrderedDict((k, v.cpu()) for k, v in state_dict.items())


#: The files of an export directory (an existing one holding only these is replaced).
EXPORT_FILES = ('config.py', 'model.pth', 'backbone_neck.onnx')


def save_export(out_dir: str, stock_cfg: Config, state_dict: Dict[str, Tensor],
                meta: Optional[dict] = None,
                extend: Optional[Callable[[Dict[str, str]], Dict[str, str]]] = None
                ) -> Dict[str, str]:
    """Write ``out_dir/config.py`` and ``out_dir/model.pth`` (an mmengine checkpoint with
    ``meta``), whole: a kill leaves the previous export or the new one
    (:func:`~mutualnet_mm.reliability.fileio.replaced_directory`).

    Args:
        out_dir: The export directory: new, or an earlier export (only
            :data:`EXPORT_FILES`).
        stock_cfg: The stock config.
        state_dict: Its weights.
        extend: Adds files before the export is put in place: given the paths written
            (by kind, in the staging directory), returns the paths of the files it wrote
            there (named as in :data:`EXPORT_FILES`).

    Returns:
        The paths in ``out_dir``, by kind.

    Raises:
        ValueError: ``out_dir`` holds other files.
        OSError: a file could not be written (naming it, and a full disk).
    """
    checkpoint = io.BytesIO()  # torch.save to a path reports a full disk as 'unexpected pos'
    torch.save({'meta': dict(meta or {}), 'state_dict': state_dict}, checkpoint)
    with replaced_directory(out_dir, EXPORT_FILES) as staging:
        paths = {'config': osp.join(staging, 'config.py'),
                 'checkpoint': osp.join(staging, 'model.pth')}
        writing = 'model.pth'
        try:
            with open(paths['checkpoint'], 'wb') as f:
                f.write(checkpoint.getbuffer())
            writing = 'config.py'
            stock_cfg.dump(paths['config'])
            if extend is not None:
                writing = 'the files added'
                paths.update(extend(dict(paths)))
        except OSError as error:
            kept = (f'the previous export in {out_dir} is unchanged' if osp.lexists(out_dir)
                    else f'{out_dir} was not created')
            raise OSError(error.errno, write_error(
                error, f'{writing} of the export {out_dir}', osp.dirname(staging),
                'export again') + f'; {kept}') from error
    return {kind: osp.join(out_dir, osp.basename(path)) for kind, path in paths.items()}


def export_subnet(model: nn.Module, cfg: Config, config: SubnetConfig, out_dir: str,
                  calibration_batches: Iterable[dict], num_calibration_batches: int = 8,
                  rescaler=None, meta: Optional[dict] = None,
                  extend: Optional[Callable[[Dict[str, str]], Dict[str, str]]] = None
                  ) -> Dict[str, str]:
    """Calibrate ``model`` at ``config`` and write the stock model to ``out_dir``, whole.

    ``model``, ``cfg`` are as for :func:`export_config_and_weights`; ``out_dir``,
    ``meta`` (extra checkpoint metadata, e.g. ``dataset_meta``) and ``extend`` as for
    :func:`save_export`, which returns the paths written.

    Args:
        calibration_batches: Training batches (e.g. :func:`calibration_loader`).
        num_calibration_batches: How many to calibrate BN with (0 keeps the statistics).
        rescaler: The batch rescaler (default: the config's or the task's).
    """
    check_replaceable(out_dir, EXPORT_FILES)  # before calibrating
    module = unwrap(model)
    set_width(module, config.width, config.head_width, config.depth)  # checks both widths
    check_scales([config.scale], 'config')
    rescaler = rescaler if rescaler is not None else task_rescaler(module, cfg)
    calibrate_bn(module, calibration_batches, config, rescaler, num_calibration_batches)
    stock_cfg, state_dict = export_config_and_weights(module, cfg, config)
    meta = dict(meta or {})
    meta['mutualnet_mm'] = dict(config.record(), frames=config.frames,
                                calibration_batches=num_calibration_batches)
    return save_export(out_dir, stock_cfg, state_dict, meta, extend)


def build_stock_model(stock_cfg: Config, state_dict: Dict[str, Tensor]) -> nn.Module:
    """The exported model, built by the stock registry and loaded (strict), in eval mode."""
    with DefaultScope.overwrite_default_scope(stock_cfg.default_scope):
        stock = MODELS.build(copy.deepcopy(stock_cfg.model))
    stock.load_state_dict(state_dict, strict=True)
    return stock.eval()
