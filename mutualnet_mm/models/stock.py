"""Slimmable modules that, at every width, compute a stock OpenMMLab module."""
import copy
import functools
import inspect
import json
from typing import Any, Callable, Dict, List, NamedTuple, Sequence

import torch
from mmcv.ops import DeformConv2d, ModulatedDeformConv2d
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope
from torch import nn

from ..ops import Slimmable


def stock_arguments(stock_cls: type, args: Sequence, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments of ``stock_cls(*args, **kwargs)`` by parameter name.

    Positional arguments take the meaning the stock class gives them; arguments the
    stock class would refuse raise its ``TypeError``. Extra keyword arguments (a stock
    ``**kwargs``) are merged in. An ``init_cfg`` of type ``Pretrained`` without a
    checkpoint is the stock default: a config can leave the checkpoint for
    ``--cfg-options ...init_cfg.checkpoint=...`` to fill.
    """
    signature = inspect.signature(stock_cls)
    bound = signature.bind(*args, **kwargs)
    named: Dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f'{stock_cls.__name__} got {len(value)} positional arguments '
                                f'beyond its named parameters: {value!r}')
        else:
            named[name] = value
    init_cfg = named.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained' and \
            init_cfg.get('checkpoint') is None:
        stock = signature.parameters.get('init_cfg')  # None: a stock **kwargs took it
        named['init_cfg'] = None if stock is None else stock.default
    return named


def drop_in_signature(stock_cls: type) -> Callable[[type], type]:
    """Give a class's ``__init__(self, *args, <keyword-only>, **kwargs)`` the stock signature.

    The published signature is the stock class's, every parameter in its place with its
    default, followed by the slimmable class's own keyword-only parameters (before a
    stock ``**kwargs``). ``__init__`` maps its arguments with :func:`stock_arguments`;
    the class gets the stock class as ``stock_class``, and an ``__init__`` of its own
    when it inherits one (a family's, shared with another library's twin).
    """
    def decorate(cls: type) -> type:
        cls.stock_class = stock_cls
        if '__init__' not in vars(cls):
            inherited = cls.__init__
            cls.__init__ = functools.wraps(inherited)(
                lambda self, *args, **kwargs: inherited(self, *args, **kwargs))
        ours = inspect.signature(cls.__init__).parameters.values()
        extras = [p for p in ours if p.kind is inspect.Parameter.KEYWORD_ONLY]
        stock = inspect.signature(stock_cls.__init__)
        params = [p for p in stock.parameters.values()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD]
        var_keyword = [p for p in stock.parameters.values()
                       if p.kind is inspect.Parameter.VAR_KEYWORD]
        cls.__init__.__signature__ = stock.replace(parameters=params + extras + var_keyword)
        return cls
    return decorate


def build_stock(config: dict, scope: str, device='cpu') -> nn.Module:
    """Build a stock module from ``config`` in the registry of ``scope`` (mmdet, mmaction, ...).

    The default scope is switched too: stock modules build their parts (box coders,
    losses, ...) in whatever scope is current. A module that reads a tensor's value while
    it builds (mmpretrain's ResNet: its drop-path rates) cannot be built on the meta
    device; it is built on the CPU and moved there.
    """
    config = copy.deepcopy(dict(config))
    config['type'] = f'{scope}.{config["type"]}'
    with DefaultScope.overwrite_default_scope(scope):
        try:
            with torch.device(device):
                return ROOT_MODELS.build(copy.deepcopy(config))
        except RuntimeError as error:
            if torch.device(device).type != 'meta' or 'meta tensors' not in str(error):
                raise
        return ROOT_MODELS.build(config).to(device)


@functools.lru_cache(maxsize=256)
def _cached_stock(config_json: str, scope: str) -> nn.Module:
    return build_stock(json.loads(config_json), scope, device='meta')


def stock_module(config: dict, scope: str) -> nn.Module:
    """The stock module of ``config`` on the meta device: its structure, no memory.

    Cached per config and shared: read it, never change it.
    """
    return _cached_stock(json.dumps(config, sort_keys=True), scope)


@functools.lru_cache(maxsize=256)
def _cached_plan(config_json: str, scope: str) -> Dict[str, int]:
    stock = _cached_stock(config_json, scope)
    plan = {}
    for name, layer in stock.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, DeformConv2d,
                              ModulatedDeformConv2d)):
            plan[name] = layer.out_channels
        elif isinstance(layer, nn.Linear):
            plan[name] = layer.out_features
    return plan


def stock_channel_plan(config: dict, scope: str) -> Dict[str, int]:
    """Output channels of every conv and linear layer of a stock module, by name.

    The module is built on the meta device (no memory, no initialization) and the
    result is cached per config.
    """
    return dict(_cached_plan(json.dumps(config, sort_keys=True), scope))


class InputTwin(NamedTuple):
    """The stock twin of a module with no width of its own, whose input channels follow a part.

    Such a module (a head, an RoI extractor) declares it as its class's ``input_twin``: at
    any width it computes the stock module ``type`` built with ``argument`` set to
    ``channels`` of the channels that ``source`` delivers (one count per output).

    Attributes:
        type: The stock type.
        argument: The constructor argument taking the channels.
        source: The part whose features it takes (``'backbone'`` or ``'neck'``).
        channels: The channels it takes, from the source's per-output counts (default:
            all outputs, concatenated).
    """

    type: str
    argument: str
    source: str
    channels: Callable[[List[int]], int] = sum


class StockSlimmable(Slimmable):
    """A :class:`Slimmable` whose channel plan is read off its stock counterpart.

    Subclasses define :meth:`stock_config`; at each width the module then computes
    exactly the stock module built from that config, by construction.
    """

    #: The OpenMMLab registry scope of the stock counterpart.
    stock_scope = 'mmdet'
    #: The stock class, where :func:`drop_in_signature` names it.
    stock_class: type

    def channel_plan(self, width: float) -> Dict[str, int]:
        return stock_channel_plan(self.stock_config(width), self.stock_scope)

    def build_stock(self, width: float, device='cpu') -> nn.Module:
        """The stock counterpart at ``width`` (freshly initialized)."""
        return build_stock(self.stock_config(width), self.stock_scope, device)
