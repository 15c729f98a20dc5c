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
import inspect
import io
import os.path as osp
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import mmengine.registry as mmengine_registry
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope, Registry
from torch import Tensor, nn

from ..engine.calibration import calibrate_bn
from ..engine.subnet import SubnetConfig, check_scales
from ..evaluation.results import QueryTable, budget_cost
from ..fileio import check_replaceable, replaced_directory, write_error
from ..models.stock import build_stock
from ..models.wrappers import unwrap
from ..ops import (
    Slimmable,
    part_width,
    set_width,
    slice_state_dict,
    slimmable_modules,
)
from .adaptive import config_scope, task_rescaler

#: The stock loops replacing the mutual ones.
_STOCK_TRAIN_LOOPS = {'MutualEpochBasedTrainLoop': 'EpochBasedTrainLoop',
                      'MutualIterBasedTrainLoop': 'IterBasedTrainLoop'}
#: Budget units of the command line -> the query table's cost.


# ------------------------------------------------------------------------ the model
def stock_model_config(model: nn.Module, model_cfg: dict, width: float,
                       head_width: Optional[float] = None) -> dict:
    """The stock model config computing ``model`` at ``width`` (and ``head_width``).

    Every :class:`StockSlimmable` part (backbone, neck, heads) is replaced by its
    ``stock_config(width)`` (a neck gets the channels the stock backbone delivers), and
    input-following modules get the stock twin their class declares (its ``input_twin``)
    with the channels they receive. Channels are read off the stock parts run on the meta
    device.

    Args:
        model: The adaptive model (or its wrapper); left at ``width``.
        model_cfg: The config it was built from.
        width: The width (of the backbone, with ``head_width``).
        head_width: The width of the parts after the backbone (``None``: ``width``).

    Raises:
        ValueError: a width is out of range, or a part has no stock counterpart (e.g.
            ``MobileNetV1``, which stock mmdet lacks).
    """
    module = unwrap(model)
    set_width(module, width, head_width)
    cfg = _plain(model_cfg)
    features: Dict[str, Any] = {}
    parts = slimmable_modules(module)
    for name, part in parts:
        kwargs = {}
        if 'in_channels' in inspect.signature(part.stock_config).parameters:
            if 'backbone' not in features:
                raise ValueError(f'{name} needs the backbone\'s channels; the backbone of '
                                 f'{type(module).__name__} is not slimmable')
            kwargs['in_channels'] = _channels(features['backbone'])
        part_cfg = part.stock_config(part_width(name, width, head_width), **kwargs)
        _check_stock(part_cfg['type'], part.stock_scope, name)
        _set_at(cfg, name, part_cfg)
        if name == 'backbone':
            features[name] = build_stock(part_cfg, part.stock_scope, 'meta')(
                _meta_probe(part))
        elif name == 'neck':
            features[name] = build_stock(part_cfg, part.stock_scope, 'meta')(
                features['backbone'])
    for name, layer in module.named_modules():
        twin = getattr(layer, 'input_twin', None)
        if twin is None:
            continue
        if twin.source not in features:
            raise ValueError(f'{name} ({type(layer).__name__}) follows the {twin.source}, '
                             'which is not slimmable')
        part_cfg = _get_at(cfg, name)
        part_cfg['type'] = twin.type
        part_cfg[twin.argument] = twin.channels(_channels(features[twin.source]))
    _check_no_package_types(cfg, 'model', parts[0][1].stock_scope)
    return cfg


def _plain(cfg: Any) -> Any:
    """A deep copy of a config (or ConfigDict) as plain dicts and lists."""
    if hasattr(cfg, 'to_dict'):
        return copy.deepcopy(cfg.to_dict())
    return copy.deepcopy(cfg)


def _path_items(path: str) -> List[Union[str, int]]:
    return [int(p) if p.isdigit() else p for p in path.split('.')]


def _get_at(cfg: dict, path: str) -> dict:
    node: Any = cfg
    for item in _path_items(path):
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f'the model config has no {path!r} (the model has that part)') \
                from None
    return node


def _set_at(cfg: dict, path: str, value: dict) -> None:
    *parents, last = _path_items(path)
    parent = _get_at(cfg, '.'.join(str(p) for p in parents)) if parents else cfg
    parent[last] = value


def _meta_probe(backbone: nn.Module) -> Tensor:
    """A small input on the meta device: a video clip for 3D backbones, else an image."""
    video = any(isinstance(m, nn.Conv3d) for m in backbone.modules())
    shape = (1, 3, 32, 64, 64) if video else (1, 3, 64, 64)
    return torch.empty(shape, device='meta')


def _channels(features: Union[Tensor, Sequence[Tensor]]) -> List[int]:
    if isinstance(features, Tensor):
        return [features.shape[1]]
    return [feature.shape[1] for feature in features]


def _package_classes() -> Dict[str, type]:
    """Type names registered by ``mutualnet_mm`` in any OpenMMLab registry -> class."""
    found: Dict[str, type] = {}
    pending = [r for r in vars(mmengine_registry).values() if isinstance(r, Registry)]
    seen: Set[int] = set()
    while pending:
        registry = pending.pop()
        if id(registry) in seen:
            continue
        seen.add(id(registry))
        pending.extend(registry.children.values())
        for name, cls in registry.module_dict.items():
            if _is_package_class(cls):
                found[name] = cls
    return found


def _is_package_class(cls: Any) -> bool:
    return getattr(cls, '__module__', '').startswith('mutualnet_mm')


def _package_types() -> Dict[str, str]:
    """Type names registered by ``mutualnet_mm`` in any OpenMMLab registry -> module."""
    return {name: cls.__module__ for name, cls in _package_classes().items()}


def _with_stock_bases(cfg: Any, classes: Dict[str, type]) -> Any:
    """``cfg`` with each package class that extends a stock class named as that class.

    Such classes (a checked image loader, the atomic checkpoint hook) only add checks
    to the stock class, which a deployed model does without.
    """
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_with_stock_bases(value, classes) for value in cfg)
    if not isinstance(cfg, dict):
        return cfg
    cfg = {key: _with_stock_bases(value, classes) for key, value in cfg.items()}
    cls = classes.get(str(cfg.get('type', '')).rpartition('.')[2])
    if cls is None or issubclass(cls, Slimmable):  # models export through stock_config
        return cfg
    base = next((b for b in cls.__mro__[1:] if not _is_package_class(b) and b is not object),
                None)
    if base is not None:
        cfg['type'] = base.__name__
    return cfg


def _check_stock(type_name: str, scope: str, where: str,
                 package_types: Optional[Dict[str, str]] = None) -> None:
    name = type_name.rpartition('.')[2]
    module = (package_types if package_types is not None else _package_types()).get(name)
    if module is not None:
        raise ValueError(f'{where}: {name!r} is a mutualnet_mm class ({module}) with no '
                         f'stock {scope} counterpart, so a model with it cannot be exported '
                         'as a stock model')


def _check_no_package_types(cfg: Any, where: str, scope: str,
                            package_types: Optional[Dict[str, str]] = None) -> None:
    """Raise if any ``type`` below ``cfg`` names a class defined in mutualnet_mm."""
    package_types = _package_types() if package_types is None else package_types
    if isinstance(cfg, dict):
        if isinstance(cfg.get('type'), str):
            _check_stock(cfg['type'], scope, where, package_types)
        for key, value in cfg.items():
            _check_no_package_types(value, f'{where}.{key}', scope, package_types)
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            _check_no_package_types(value, f'{where}[{i}]', scope, package_types)


# ----------------------------------------------------------------------- the config
def scale_test_pipelines(cfg: dict, config: SubnetConfig) -> int:
    """Resize the test pipelines of ``cfg`` (a plain dict) to ``config`` in place.

    ``Resize`` scales (and scale factors) and crop sizes are multiplied by the scale;
    with ``config.frames``, ``SampleFrames`` takes that many frames over the same span.
    Covers ``test_dataloader``, ``val_dataloader`` and the top-level ``test_pipeline``.

    Returns:
        How many transforms were changed.

    Raises:
        ValueError: the scale is not 1 and no transform resizes, or ``config.frames``
            is set and no transform samples frames.
    """
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
            if config.scale != 1.0 and _scale_transform(kind, transform, config.scale):
                resized += 1
            if config.frames is not None and kind == 'SampleFrames':
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
                         'SampleFrames')
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


def _scale_transform(kind: str, transform: dict, scale: float) -> bool:
    resize = kind.endswith('Resize') or kind == 'ResizeEdge'  # mmpretrain: the short edge
    if resize and transform.get('scale') is not None:
        transform['scale'] = _scaled(transform['scale'], scale)
        return True
    if kind.endswith('Resize') and transform.get('scale_factor') is not None:
        factor = transform['scale_factor']
        transform['scale_factor'] = type(factor)(f * scale for f in factor) \
            if isinstance(factor, (list, tuple)) else factor * scale
        return True
    if kind in ('CenterCrop', 'ThreeCrop', 'TenCrop') and 'crop_size' in transform:
        transform['crop_size'] = _scaled(transform['crop_size'], scale)
        return True
    return False


def stock_runtime_config(cfg: Config, model_cfg: dict, config: SubnetConfig) -> Config:
    """The whole config of the exported model: standalone, stock types only.

    ``custom_imports`` and private top-level variables go, the mutual train loop becomes
    its stock twin, the per-configuration val/test loops become ``ValLoop``/``TestLoop``,
    and the test pipelines are resized to ``config``.
    """
    data = _plain(cfg)
    for key in [k for k in data if k.startswith('_')] + ['custom_imports', 'work_dir']:
        data.pop(key, None)
    data['model'] = model_cfg
    data['default_scope'] = config_scope(cfg)
    data['load_from'] = None
    data['resume'] = False
    train_cfg = data.get('train_cfg')
    if isinstance(train_cfg, dict):
        train_cfg.pop('mutual', None)
        if train_cfg.get('type') in _STOCK_TRAIN_LOOPS:
            train_cfg['type'] = _STOCK_TRAIN_LOOPS[train_cfg['type']]
    for key, loop in (('val_cfg', 'ValLoop'), ('test_cfg', 'TestLoop')):
        if data.get(key) is not None:
            data[key] = dict(type=loop)
    scale_test_pipelines(data, config)
    data = _with_stock_bases(data, _package_classes())
    _check_no_package_types(data, 'config', data['default_scope'])
    return Config(data)


# ---------------------------------------------------------------------- the weights
def export_config_and_weights(model: nn.Module, cfg: Config,
                              config: SubnetConfig) -> Tuple[Config, Dict[str, Tensor]]:
    """The stock config and state dict of ``model`` at ``config``.

    The model's BN statistics must already be calibrated for ``config`` (see
    :func:`export_subnet`, which does it); they are sliced with the weights.

    Args:
        model: The adaptive model (or its wrapper); left at the configuration's widths.
        cfg: Its whole config.
        config: The configuration.

    Returns:
        ``(stock_cfg, state_dict)``: the standalone config, and the weights on the CPU
        with exactly the stock model's names and shapes.
    """
    module = unwrap(model)
    check_scales([config.scale], 'config')
    model_cfg = stock_model_config(module, cfg.model, config.width, config.head_width)
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
    """Write ``out_dir/config.py`` and ``out_dir/model.pth`` (an mmengine checkpoint), whole.

    The files are written to a staging directory next to ``out_dir`` that then replaces
    it as a whole (:func:`~mutualnet_mm.fileio.replaced_directory`): a kill leaves the
    previous export or the new one, never one file of each.

    Args:
        out_dir: The export directory: new, or an earlier export (only
            :data:`EXPORT_FILES`).
        stock_cfg: The stock config.
        state_dict: Its weights.
        meta: The checkpoint's metadata.
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

    Args:
        model: The adaptive model (or its wrapper).
        cfg: Its whole config.
        config: The configuration to export.
        out_dir: Output directory (``config.py``, ``model.pth``): new, or an earlier
            export, which is replaced as a whole (see :func:`save_export`).
        calibration_batches: Training batches (e.g. :func:`calibration_loader`).
        num_calibration_batches: How many to calibrate BN with (0 keeps the statistics).
        rescaler: The batch rescaler (default: the config's or the task's).
        meta: Extra checkpoint metadata (e.g. ``dataset_meta``).
        extend: Adds files to the export (see :func:`save_export`).

    Returns:
        The paths written, by kind.
    """
    check_replaceable(out_dir, EXPORT_FILES)  # before calibrating
    module = unwrap(model)
    set_width(module, config.width, config.head_width)  # checks both widths
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


# ----------------------------------------------------------- choosing a configuration
def resolve_config(width: Optional[float] = None, scale: float = 1.0,
                   frames: Optional[int] = None, budget: Optional[float] = None,
                   head_width: Optional[float] = None,
                   budget_unit: str = 'gflops',
                   query_table: Union[str, QueryTable, None] = None,
                   checkpoint: Optional[str] = None,
                   checkpoint_name: str = 'the model') -> Tuple[SubnetConfig, Optional[dict]]:
    """The configuration to export: given, or the best within a budget.

    Args:
        width, scale, frames, head_width: The configuration (with ``budget`` None).
        budget: A cost budget, looked up in the query table.
        budget_unit: ``'gflops'`` or ``'ms'`` (latency).
        query_table: The table of the budget's unit, or its path (needed with
            ``budget``; :func:`~mutualnet_mm.evaluation.locations.find_query_table`
            finds the one of a config and checkpoint).
        checkpoint: The fingerprint of the weights to export: a table loaded from a path
            must record it (see :meth:`QueryTable.load`; ``None``: no check).
        checkpoint_name: Where those weights come from, for messages.

    Returns:
        ``(config, entry)``: the entry is the query-table row (None without a budget).

    Raises:
        ValueError: neither or both of ``width`` and ``budget`` given, an unknown unit, a
            table with another cost axis, of other weights, outside its result set or not
            parsing, or no configuration within the budget.
        FileNotFoundError: the table does not exist.
    """
    if (width is None) == (budget is None):
        raise ValueError('give either a width (and scale) or a budget, not '
                         + ('both' if width is not None else 'neither'))
    if budget is None:
        return SubnetConfig(float(width), check_scales([scale], 'config')[0], frames,
                            None if head_width is None else float(head_width)), None
    cost = budget_cost(budget_unit)
    if query_table is None:
        raise ValueError('a budget needs a query table')
    table = query_table if isinstance(query_table, QueryTable) else \
        QueryTable.load(query_table, checkpoint, checkpoint_name)
    if table.cost != cost:
        raise ValueError(f'{table.source} is a table of {table.cost} budgets, not '
                         f'{budget_unit} ({cost})')
    entry = table.lookup(budget)
    return config_of(entry), entry


def config_of(entry: dict) -> SubnetConfig:
    """The configuration of a query-table entry."""
    return SubnetConfig.from_record(entry)
