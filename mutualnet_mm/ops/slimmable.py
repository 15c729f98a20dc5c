"""The contract of a slimmable module, and setting the width of a whole model."""
from abc import abstractmethod
from typing import Dict, Iterator, List, Mapping, Optional, Set, Tuple, Union

import torch
from torch import Tensor, nn

from .depth import DepthSequential
from .layers import SlimmableLayer, convert_to_slimmable
from .width import WidthRange, check_width, check_width_range


class Slimmable:
    """A module (backbone, neck, head) whose channel counts follow a width multiplier.

    Subclasses are ``nn.Module`` s built at full width from slimmable layers. They define
    the channel counts each width gives (:meth:`channel_plan`) and the stock OpenMMLab
    module that computes exactly what they compute at a width (:meth:`stock_config`).
    """

    width_range: WidthRange = (1.0, 1.0)
    width: float = 1.0
    #: Attributes :meth:`set_width` changes (see :class:`WidthSnapshot`).
    width_state: Tuple[str, ...] = ('width',)

    def init_width_range(self, width_range) -> None:
        """Validate and store the allowed ``(min, max)`` width range."""
        self.width_range = check_width_range(width_range, type(self).__name__)

    @abstractmethod
    def channel_plan(self, width: float) -> Dict[str, int]:
        """Active output channels of the slimmable layers at ``width``, by layer name.

        Names are relative to this module; layers not listed run all their outputs
        (depthwise convs and norms follow their inputs).
        """

    @abstractmethod
    def stock_config(self, width: float) -> dict:
        """Config of the stock module that computes this one at ``width``.

        Its state dict holds the same names as this module's, with every tensor a
        prefix slice of this module's (see :func:`slice_state_dict`).
        """

    def set_width(self, width: float) -> None:
        """Run at ``width``: apply :meth:`channel_plan` to the layers.

        Stock layers swapped in since construction (mmengine's
        ``convert_sync_batchnorm``, which a config's ``sync_bn`` applies, replaces every
        batch norm with a plain ``SyncBatchNorm``) get their slimmable twins back first,
        sharing their parameters and buffers.
        """
        width = check_width(width, self.width_range, type(self).__name__)
        convert_to_slimmable(self)  # type: ignore[arg-type]
        plan = self.channel_plan(width)
        layers = dict(self.named_modules())  # type: ignore[attr-defined]
        for name, layer in layers.items():
            if isinstance(layer, SlimmableLayer) and layer.slim_out and \
                    not _is_nested(name, layers, self):
                layer.set_active_out_channels(plan.get(name))
        unknown = sorted(set(plan) - set(layers))
        if unknown:
            raise KeyError(f'{type(self).__name__}.channel_plan names unknown layers '
                           f'{unknown[:3]}')
        self.width = width


def _is_nested(name: str, layers: Mapping[str, nn.Module], owner: Slimmable) -> bool:
    """Whether layer ``name`` lies inside another Slimmable below ``owner``."""
    parts = name.split('.')
    parents = (layers['.'.join(parts[:depth])] for depth in range(1, len(parts)))
    return any(parent is not owner and isinstance(parent, Slimmable) for parent in parents)


def slimmable_modules(model: nn.Module) -> List[Tuple[str, Slimmable]]:
    """The outermost :class:`Slimmable` modules in ``model`` (through wrappers).

    In the order of ``model.named_modules()``, each module once; the walk does not enter
    a slimmable module (it runs on every :func:`set_width`).
    """
    found: List[Tuple[str, Slimmable]] = []
    seen: Set[int] = set()

    def visit(name: str, module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if isinstance(module, Slimmable):
            found.append((name, module))
            return
        for child_name, child in module._modules.items():
            if child is not None:
                visit(f'{name}.{child_name}' if name else child_name, child)

    visit('', model)
    return found


def width_range_of(model: nn.Module) -> WidthRange:
    """The widths every slimmable part of ``model`` allows (the ranges' intersection)."""
    return _common_range(model, slimmable_modules(model))


def _common_range(model: nn.Module, parts: List[Tuple[str, Slimmable]]) -> WidthRange:
    """The intersection of the width ranges of ``parts``, the slimmable parts of ``model``."""
    if not parts:
        raise ValueError(f'{type(model).__name__} has no slimmable module: use a '
                         'slimmable backbone (e.g. SlimmableResNet) in its config')
    return _intersection(parts, 'width_range', 'width ranges of the slimmable parts')


def _intersection(parts: List[Tuple[str, Slimmable]], attribute: str, what: str) -> WidthRange:
    """The intersection of the ranges ``attribute`` of ``parts`` (``what`` they are)."""
    ranges = [getattr(part, attribute) for _, part in parts]
    low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if low > high:
        listed = ', '.join(f'{name or "model"}: {r}' for (name, _), r in zip(parts, ranges))
        raise ValueError(f'the {what} do not overlap ({listed})')
    return low, high


def is_backbone(name: str) -> bool:
    """Whether the slimmable part at ``name`` (from :func:`slimmable_modules`) is the
    model's backbone: ``backbone`` (or ``<wrapper>.backbone``), or the model itself."""
    return name == '' or name.rpartition('.')[2] == 'backbone'


def part_width(name: str, width: float, head_width: Optional[float] = None) -> float:
    """The width the part ``name`` runs at: the backbone takes ``width``, every other
    part (neck, heads) ``head_width`` (``None``: ``width`` too)."""
    return width if head_width is None or is_backbone(name) else head_width


def depth_range_of(model: nn.Module) -> Optional[WidthRange]:
    """The depths every depth-elastic part of ``model`` allows (``None``: it has none).

    A part is depth-elastic where it has ``set_depth`` and a ``depth_range`` (RTMDet's
    CSPNeXt backbone and neck); the others run their whole depth at every depth.
    """
    parts = [(name, part) for name, part in slimmable_modules(model) if has_depth(part)]
    if not parts:
        return None
    return _intersection(parts, 'depth_range', 'depth ranges of the depth-elastic parts')


def has_depth(part: object) -> bool:
    """Whether a slimmable part has a depth of its own to set."""
    return hasattr(part, 'set_depth') and hasattr(part, 'depth_range')


def set_width(model: nn.Module, width: float, head_width: Optional[float] = None,
              depth: Optional[float] = None) -> None:
    """Set the active width (and depth) of every slimmable module in ``model``.

    Args:
        model: A slimmable module, or any model (detector, recognizer, wrapper) holding
            slimmable modules.
        width: The width multiplier of the backbone, and of every other part when
            ``head_width`` is ``None``.
        head_width: The width of the parts after the backbone (neck, heads); the neck
            takes the backbone's channels at ``width`` whatever its own.
        depth: The depth multiplier of every depth-elastic part (``None``: leave the
            depth as it is).

    Raises:
        ValueError: a width or depth is outside the range every part allows, the model
            has no slimmable part, or a depth is given to a model without one.
    """
    parts = slimmable_modules(model)  # one walk of the model: this runs on every pass
    allowed = _common_range(model, parts)
    width = check_width(width, allowed, type(model).__name__)
    if head_width is not None:
        head_width = check_width(head_width, allowed, f'{type(model).__name__} (head width)')
    if depth is not None:
        depths = depth_range_of(model)
        if depths is None:
            raise ValueError(f'depth {depth!r} given, but {type(model).__name__} has no '
                             'depth-elastic part (only CSPNeXt backbones and necks are)')
        depth = check_width(depth, depths, type(model).__name__, 'depth')
    for name, part in parts:
        if depth is not None and has_depth(part):
            part.depth = depth  # applied by its set_width
        part.set_width(part_width(name, width, head_width))


def get_depth(model: nn.Module) -> Optional[float]:
    """The one depth the depth-elastic parts of ``model`` run at (``None``: it has none)."""
    depths = {part.depth for _, part in slimmable_modules(model) if has_depth(part)}
    if len(depths) > 1:
        raise ValueError(f'the depth-elastic parts of {type(model).__name__} run at '
                         f'different depths {sorted(depths)}')
    return depths.pop() if depths else None


class WidthSnapshot:
    """What :func:`set_width` leaves on every slimmable module of a model, to restore fast.

    ``set_width`` walks the model, checks the width and computes channel plans: about a
    millisecond on the demo detector, 5% of its cheapest prediction. Restoring a snapshot
    writes the recorded values back (each module's :attr:`width_state` attributes) and
    nothing else. It assumes the model's modules are those it was taken on.

    The model is set to the configuration first (arguments as :func:`set_width`).
    """

    def __init__(self, model: nn.Module, width: float, head_width: Optional[float] = None,
                 depth: Optional[float] = None) -> None:
        set_width(model, width, head_width, depth)
        self.width, self.head_width = get_widths(model)
        self._states = [(module, {name: getattr(module, name)
                                  for name in module.width_state})  # type: ignore[union-attr]
                        for module in model.modules()
                        if isinstance(module, (Slimmable, SlimmableLayer, DepthSequential))]

    def restore(self) -> None:
        """Put every recorded module back in the recorded state."""
        for module, state in self._states:
            module.__dict__.update(state)


def get_widths(model: nn.Module) -> Tuple[float, float]:
    """``(width, head_width)``: the widths the backbone and the other parts of ``model``
    run at (a model without other slimmable parts, or a backbone alone, gives its width
    twice)."""
    backbone, heads = set(), set()
    for name, part in slimmable_modules(model):
        (backbone if is_backbone(name) else heads).add(part.width)
    if len(backbone) > 1 or len(heads) > 1:
        raise ValueError(f'the slimmable parts of {type(model).__name__} run at different '
                         f'widths (backbone: {sorted(backbone)}, others: {sorted(heads)})')
    width = (backbone or heads).pop()
    return width, heads.pop() if heads else width


def get_width(model: nn.Module) -> float:
    """The one width every slimmable part of ``model`` runs at.

    Raises:
        ValueError: the parts run at different widths (see :func:`get_widths`).
    """
    width, head_width = get_widths(model)
    if width != head_width:
        raise ValueError(f'{type(model).__name__} runs its backbone at width {width:g} and '
                         f'its other parts at {head_width:g}; use get_widths')
    return width


def slice_state_dict(model: nn.Module,
                     targets: Mapping[str, Union[Tensor, torch.Size]]) -> Dict[str, Tensor]:
    """Cut ``model``'s full-width tensors to the shapes a stock module expects.

    Tensors are cut to prefix slices; a layer whose active channels are not a prefix
    (e.g. inputs concatenated from two slimmed branches) defines
    ``slice_tensor(name, tensor, shape)`` to cut its own.

    Args:
        model: The slimmable model (its ``state_dict()`` holds the full tensors).
        targets: Target names with their tensors or shapes (e.g. a stock model's
            ``state_dict()``).

    Returns:
        A state dict with the target names, each tensor a contiguous copy.

    Raises:
        KeyError: a target name is missing from ``model``.
        ValueError: a target shape is larger than the full tensor in some dimension.
    """
    state_dict = model.state_dict()
    modules = dict(model.named_modules())
    sliced: Dict[str, Tensor] = {}
    for name, target in targets.items():
        if name not in state_dict:
            raise KeyError(f'the stock module expects {name!r}, which '
                           f'{type(model).__name__} does not have')
        tensor = state_dict[name]
        shape = tuple(getattr(target, 'shape', target))
        if tensor.dim() != len(shape) or any(t < s for t, s in zip(tensor.shape, shape)):
            raise ValueError(f'{name!r}: cannot cut {tuple(tensor.shape)} to {shape}')
        owner_name, _, tensor_name = name.rpartition('.')
        owner = modules.get(owner_name)
        if hasattr(owner, 'slice_tensor'):
            cut = owner.slice_tensor(tensor_name, tensor, shape)
        else:
            cut = tensor[tuple(slice(0, s) for s in shape)]
        sliced[name] = cut.clone()
    return sliced


def iter_slimmable_layers(model: nn.Module) -> Iterator[Tuple[str, SlimmableLayer]]:
    """Every slimmable layer in ``model`` with its name."""
    for name, module in model.named_modules():
        if isinstance(module, SlimmableLayer):
            yield name, module
