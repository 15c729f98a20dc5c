"""The stock config of one configuration of an adaptive model: its model and the rest.

:func:`stock_model_config` replaces every slimmable part by its stock twin at the
configuration's widths (channels read off the stock parts run on the meta device);
:func:`stock_runtime_config` makes the whole config standalone: stock types and loops
only, the test pipelines resized to the configuration (:mod:`.pipelines`).
"""
import copy
import inspect
from typing import Any, Dict, List, Optional, Sequence, Set, Union

import mmengine.registry as mmengine_registry
import torch
from mmengine.config import Config
from mmengine.registry import Registry
from torch import Tensor, nn

from ..engine.subnet import SubnetConfig
from ..models.stock import build_stock
from ..models.wrappers import unwrap
from ..ops import (
    Slimmable,
    part_width,
    set_width,
    slimmable_modules,
)
from .adaptive import config_scope
from .pipelines import scale_test_pipelines

#: The stock loops replacing the mutual ones.
_STOCK_TRAIN_LOOPS = {'MutualEpochBasedTrainLoop': 'EpochBasedTrainLoop',
                      'MutualIterBasedTrainLoop': 'IterBasedTrainLoop'}


def stock_model_config(model: nn.Module, model_cfg: dict, width: float,
                       head_width: Optional[float] = None,
                       depth: Optional[float] = None) -> dict:
    """The stock model config computing ``model`` at ``width`` (and ``head_width``,
    ``depth``).

    Every :class:`StockSlimmable` part (backbone, neck, heads) is replaced by its
    ``stock_config(width)``, and input-following modules by their ``input_twin``; the
    channels a part receives are read off the stock parts run on the meta device.

    Args:
        model: The adaptive model (or its wrapper); left at ``width``.
        model_cfg: The config it was built from.
        width: The width (of the backbone, with ``head_width``).
        head_width: The width of the parts after the backbone (``None``: ``width``).
        depth: The depth of the depth-elastic parts (``None``: as they are).

    Raises:
        ValueError: a width is out of range, or a part has no stock counterpart (e.g.
            ``MobileNetV1``, which stock mmdet lacks).
    """
    module = unwrap(model)
    set_width(module, width, head_width, depth)
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
                 classes: Optional[Dict[str, type]] = None) -> None:
    name = type_name.rpartition('.')[2]
    cls = (classes if classes is not None else _package_classes()).get(name)
    if cls is not None:
        raise ValueError(f'{where}: {name!r} is a mutualnet_mm class ({cls.__module__}) with no '
                         f'stock {scope} counterpart, so a model with it cannot be exported '
                         'as a stock model')


def _check_no_package_types(cfg: Any, where: str, scope: str,
                            classes: Optional[Dict[str, type]] = None) -> None:
    """Raise if any ``type`` below ``cfg`` names a class defined in mutualnet_mm."""
    classes = _package_classes() if classes is None else classes
    if isinstance(cfg, dict):
        if isinstance(cfg.get('type'), str):
            _check_stock(cfg['type'], scope, where, classes)
        for key, value in cfg.items():
            _check_no_package_types(value, f'{where}.{key}', scope, classes)
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            _check_no_package_types(value, f'{where}[{i}]', scope, classes)


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
