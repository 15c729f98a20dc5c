"""The contract of every registered slimmable module, checked against its stock twin.

At every width a slimmable module computes exactly its stock twin (the stock module
built from ``stock_config(width)`` and loaded with the sliced weights); at width 1.0
it is a drop-in for the stock class built with the same arguments; training at a
width touches only the active slices of its weights. Every slimmable module registered
in mmdet's, mmaction2's or mmpretrain's ``MODELS`` needs an entry in :data:`CASES`; every
other ``Slimmable*`` class there follows its input and declares its stock twin.
"""
import inspect
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import pytest
import torch
from mmaction.registry import MODELS as MMACTION_MODELS
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

import mutualnet_mm  # noqa: F401  (registers the modules)
from mutualnet_mm.models import build_stock
from mutualnet_mm.ops import (
    Slimmable,
    SlimmableLayer,
    WidthSnapshot,
    scale_channels,
    slice_state_dict,
    widen_channels,
)

from .equivalence import assert_matches_stock, flatten, max_difference, randomize_norms, stock_twin
from .test_video_backbones import X3D_ARGS, clip, slowfast_args

WIDTHS = (1.0, 0.75, 0.5, 0.25)
#: The registries holding slimmable modules, by scope.
REGISTRIES = {'mmdet': MMDET_MODELS, 'mmaction': MMACTION_MODELS,
              'mmpretrain': MMPRETRAIN_MODELS}


def image_inputs(width: float) -> Tensor:
    """A tiny RGB batch (backbones eat the same input at every width)."""
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _maps(channels: Sequence[int], sizes: Sequence[int]) -> Tuple[Tensor, ...]:
    """Feature maps (a neck's or dense head's inputs) with these channels and sizes."""
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.randn(2, c, s, s, generator=generator) for c, s in zip(channels, sizes))


def _rois(channels: int, size: int) -> Tensor:
    """Pooled RoI features (a RoI head's inputs)."""
    return torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(1))


_ANCHORS = dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                ratios=[0.5, 1.0, 2.0], strides=[8, 16])


@dataclass(frozen=True)
class Case:
    """How to build and call one slimmable module for the contract tests.

    Attributes:
        config: Config of the slimmable module.
        widths: Widths to check (all inside the module's ``width_range``).
        depths: For a module with a depth too, the depth of each width.
        make_inputs: Builds the inputs for a width.
        forward: How to call the module on the inputs (default ``m(inputs)``).
        scope: Registry scope of the module and its stock twin.
        stock_type: Stock class the module replaces at width 1.0 (default: the type
            without its ``Slimmable`` prefix).
    """

    config: dict
    widths: Tuple[float, ...] = WIDTHS
    depths: Optional[Tuple[float, ...]] = None
    make_inputs: Callable[[float], Any] = image_inputs
    forward: Optional[Callable[[nn.Module, Any], Any]] = None
    scope: str = 'mmdet'
    stock_type: Optional[str] = None

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        module = build_stock(self.config, self.scope)
        randomize_norms(module)
        return module

    def build_plain_stock(self) -> nn.Module:
        config = {k: v for k, v in self.config.items()
                  if k not in ('width_range', 'depth_range', 'slim_outputs')}
        config['type'] = self.stock_type or config['type'].removeprefix('Slimmable')
        return build_stock(config, self.scope)

    def run(self, module: nn.Module, inputs: Any) -> Any:
        return self.forward(module, inputs) if self.forward else module(inputs)


#: Contract cases by name; every registered slimmable module must have one.
CASES: Dict[str, Case] = {
    'SlimmableResNet-18': Case(dict(type='SlimmableResNet', depth=18)),
    'SlimmableResNet-50': Case(dict(type='SlimmableResNet', depth=50)),
    # widths below 0.35 are structurally impossible at widen_factor 1.0 (see its docstring)
    'SlimmableMobileNetV2': Case(dict(type='SlimmableMobileNetV2'), widths=(1.0, 0.75, 0.5)),
    'SlimmableMobileNetV2-x1.4': Case(dict(type='SlimmableMobileNetV2', widen_factor=1.4,
                                           width_range=(0.25, 1.0))),
    'SlimmableMobileNetV1': Case(dict(type='SlimmableMobileNetV1')),
    # The stock twin's FPN takes full-width inputs (stock_config's default); inputs that
    # follow a backbone are checked in test_necks_heads.py.
    'SlimmableFPN': Case(dict(type='SlimmableFPN', in_channels=[16, 32], out_channels=72,
                              num_outs=3, slim_outputs=True, norm_cfg=dict(type='BN')),
                         make_inputs=lambda w: _maps([16, 32], (8, 4))),
    'SlimmableRPNHead': Case(dict(type='SlimmableRPNHead', in_channels=72, feat_channels=72,
                                  anchor_generator=_ANCHORS),
                             make_inputs=lambda w: _maps([scale_channels(72, w)] * 2, (8, 4))),
    'SlimmableRetinaHead': Case(dict(type='SlimmableRetinaHead', num_classes=3, in_channels=72,
                                     feat_channels=72, stacked_convs=2,
                                     norm_cfg=dict(type='BN'), anchor_generator=_ANCHORS),
                                make_inputs=lambda w: _maps([scale_channels(72, w)] * 2,
                                                            (8, 4))),
    'SlimmableShared2FCBBoxHead': Case(dict(type='SlimmableShared2FCBBoxHead', in_channels=72,
                                            fc_out_channels=96, num_classes=3),
                                       make_inputs=lambda w: _rois(scale_channels(72, w), 7)),
    'SlimmableShared4Conv1FCBBoxHead': Case(
        dict(type='SlimmableShared4Conv1FCBBoxHead', in_channels=72, conv_out_channels=72,
             fc_out_channels=96, num_classes=3, norm_cfg=dict(type='BN')),
        make_inputs=lambda w: _rois(scale_channels(72, w), 7)),
    'SlimmableConvFCBBoxHead': Case(
        dict(type='SlimmableConvFCBBoxHead', num_shared_convs=1, num_cls_convs=1,
             num_reg_convs=1, num_reg_fcs=1, in_channels=72, conv_out_channels=72,
             fc_out_channels=96, num_classes=3),
        make_inputs=lambda w: _rois(scale_channels(72, w), 7)),
    'SlimmableFCNMaskHead': Case(dict(type='SlimmableFCNMaskHead', num_convs=2, in_channels=72,
                                      conv_out_channels=72, num_classes=3),
                                 make_inputs=lambda w: _rois(scale_channels(72, w), 14)),
    'SlimmableX3D': Case(dict(type='SlimmableX3D', **X3D_ARGS), make_inputs=clip,
                         scope='mmaction'),
    'SlimmableResNet3dSlowFast': Case(dict(type='SlimmableResNet3dSlowFast', **slowfast_args()),
                                      make_inputs=clip, scope='mmaction'),
    # RTMDet-l's backbone at RTMDet-m, s and tiny, and width and depth apart
    'SlimmableCSPNeXt': Case(dict(type='SlimmableCSPNeXt'),
                             widths=(1.0, 0.75, 0.5, 0.375, 1.0, 0.5),
                             depths=(1.0, 0.67, 0.33, 0.167, 0.167, 1.0)),
    'SlimmableCSPNeXtPAFPN': Case(
        dict(type='SlimmableCSPNeXtPAFPN', in_channels=[64, 128, 256], out_channels=64,
             num_csp_blocks=3, norm_cfg=dict(type='BN')),
        widths=(1.0, 0.75, 0.5, 0.375, 1.0), depths=(1.0, 0.67, 0.33, 0.167, 0.167),
        make_inputs=lambda w: _maps([widen_channels(c, w) for c in (64, 128, 256)],
                                    (8, 4, 2))),
    'SlimmableRTMDetSepBNHead': Case(
        dict(type='SlimmableRTMDetSepBNHead', num_classes=3, in_channels=64, feat_channels=64,
             stacked_convs=2, exp_on_reg=True, anchor_generator=dict(
                 type='MlvlPointGenerator', offset=0, strides=[8, 16, 32])),
        widths=(1.0, 0.75, 0.5, 0.375),
        make_inputs=lambda w: _maps([widen_channels(64, w)] * 3, (8, 4, 2))),
    'SlimmableRTMDetInsSepBNHead': Case(
        dict(type='SlimmableRTMDetInsSepBNHead', num_classes=3, in_channels=64,
             feat_channels=64, stacked_convs=2, anchor_generator=dict(
                 type='MlvlPointGenerator', offset=0, strides=[8, 16, 32])),
        widths=(1.0, 0.75, 0.5, 0.375),
        make_inputs=lambda w: _maps([widen_channels(64, w)] * 3, (8, 4, 2))),
    'SlimmableResNet-18 (mmpretrain)': Case(dict(type='SlimmableResNet', depth=18),
                                            scope='mmpretrain'),
    'SlimmableMobileNetV2 (mmpretrain)': Case(dict(type='SlimmableMobileNetV2'),
                                              widths=(1.0, 0.75, 0.5), scope='mmpretrain'),
    'SlimmableMobileNetV1 (mmpretrain)': Case(dict(type='SlimmableMobileNetV1'),
                                              scope='mmpretrain'),
}


def _case_widths():
    return [pytest.param(name, width, depth, id=f'{name}-{width}' + (f'-d{depth}' if depth else ''))
            for name, case in CASES.items()
            for width, depth in zip(case.widths, case.depths or (None,) * len(case.widths))]


def layer_output_shapes(model: nn.Module, inputs: Any, run: Callable) -> Dict[str, tuple]:
    """Output shape of every conv, linear and batch-norm layer in one forward pass."""
    shapes: Dict[str, tuple] = {}

    def record(name: str) -> Callable:
        def hook(layer: nn.Module, args: Any, output: Tensor) -> None:
            shapes.setdefault(name, tuple(output.shape))
        return hook

    handles = [layer.register_forward_hook(record(name))
               for name, layer in model.named_modules()
               if isinstance(layer, (_ConvNd, nn.Linear, _BatchNorm))]
    try:
        with torch.no_grad():
            run(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


@pytest.mark.parametrize('case_name, width, depth', _case_widths())
def test_slimmable_contract(case_name: str, width: float, depth: Optional[float]) -> None:
    case = CASES[case_name]
    module = case.build()
    if depth is not None:
        module.set_depth(depth)
    module.set_width(width)
    inputs = case.make_inputs(width)

    # every layer runs with the channels of the stock twin's layer of the same name
    stock = stock_twin(module, width)
    module.eval()
    stock.eval()
    assert layer_output_shapes(module, inputs, case.run) == \
        layer_output_shapes(stock, inputs, case.run)

    assert_matches_stock(module, width, case.make_inputs, case.forward)

    # a backward pass at this width reaches exactly the active slices of the weights (as
    # slice_state_dict cuts them: prefixes, or a layer's own cut such as SlowFast's laterals)
    active_shapes = {name: tensor.shape for name, tensor in stock.state_dict().items()}
    module.train()
    module.zero_grad()
    generator = torch.Generator().manual_seed(2)
    outputs = flatten(case.run(module, inputs))
    loss = sum((out * torch.randn(out.shape, generator=generator)).sum() for out in outputs)
    loss.backward()
    conv_weights = {f'{name}.weight' for name, layer in module.named_modules()
                    if isinstance(layer, _ConvNd)}
    grads = {name: param.grad for name, param in module.named_parameters()
             if param.requires_grad and name in active_shapes}  # not frozen stages
    missing = [name for name, grad in grads.items() if grad is None]
    assert not missing, f'{missing} got no gradient at width {width}'
    idle = [name for name, param in module.named_parameters()
            if name not in active_shapes and param.grad is not None]
    assert not idle, f'{idle[:3]}: gradients in blocks the depth {depth} leaves out'
    active = slice_state_dict(SimpleNamespace(state_dict=lambda: grads,
                                              named_modules=module.named_modules),
                              {name: active_shapes[name] for name in grads})
    for name, grad in grads.items():
        assert torch.count_nonzero(active[name]) == torch.count_nonzero(grad), \
            f'{name}: gradient outside the active slice'
        if name in conv_weights:
            assert active[name].abs().max() > 0, f'{name}: no gradient in its slice'

    # evaluation keeps weight slices: an optimizer step must not leave stale ones
    module.eval()
    with torch.no_grad():
        before = case.run(module, inputs)
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)  # a bounded step, at any size
    torch.optim.SGD(module.parameters(), lr=1.0).step()
    with torch.no_grad():
        assert max_difference(case.run(module, inputs), before) > 1e-4  # the step shows
    assert_matches_stock(module, width, case.make_inputs, case.forward)


@pytest.mark.parametrize('case_name', list(CASES))
def test_full_width_is_drop_in_for_stock(case_name: str) -> None:
    case = CASES[case_name]
    module = case.build()
    plain = case.build_plain_stock()
    assert {k: v.shape for k, v in module.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}

    # a stock checkpoint loads as is and gives the stock outputs at width 1.0
    randomize_norms(plain, seed=3)
    module.load_state_dict(plain.state_dict(), strict=True)
    module.set_width(1.0)
    module.eval()
    plain.eval()
    inputs = case.make_inputs(1.0)
    with torch.no_grad():
        assert max_difference(case.run(module, inputs), case.run(plain, inputs)) <= 1e-5


@pytest.mark.parametrize('case_name', list(CASES))
def test_width_outside_range_is_rejected(case_name: str) -> None:
    module = CASES[case_name].build()
    low, high = module.width_range
    for width in (low / 2, 1.25):
        with pytest.raises(ValueError) as error:
            module.set_width(width)
        message = str(error.value)
        assert f'{width:g}' in message and f'[{low:g}, {high:g}]' in message, message


def _is_slimmable(entry: Any) -> bool:
    """Whether a registry entry (a class or a function) is a slimmable module."""
    return isinstance(entry, type) and issubclass(entry, Slimmable)


def test_every_registered_slimmable_module_has_a_case() -> None:
    covered = {(case.scope, case.config['type']) for case in CASES.values()}
    registered = {(scope, name) for scope, registry in REGISTRIES.items()
                  for name, cls in registry.module_dict.items() if _is_slimmable(cls)}
    assert {scope for scope, _ in registered} == set(REGISTRIES)
    missing = sorted(registered - covered)
    assert not missing, f'slimmable modules without a contract case in CASES: {missing}'


def test_every_input_following_module_declares_its_stock_base() -> None:
    """The other ``Slimmable*`` classes have no width: export reads their ``input_twin``."""
    found = 0
    for scope, registry in REGISTRIES.items():
        for name, cls in registry.module_dict.items():
            if not name.startswith('Slimmable') or _is_slimmable(cls):
                continue
            twin = cls.input_twin
            assert issubclass(cls, registry.get(twin.type)), (scope, name)
            assert twin.argument in inspect.signature(cls).parameters, (scope, name)
            assert twin.source in ('backbone', 'neck'), (scope, name)
            found += 1
    assert found >= 4  # RoI extractor, X3D, SlowFast and linear classification heads


def width_states(module: nn.Module) -> list:
    """Every attribute a width change sets, module by module."""
    return [(name, {key: getattr(part, key) for key in part.width_state})
            for name, part in module.named_modules()
            if isinstance(part, (Slimmable, SlimmableLayer))]


@pytest.mark.parametrize('case_name', list(CASES))
def test_width_snapshot_restores_what_set_width_sets(case_name: str) -> None:
    case = CASES[case_name]
    module = case.build()
    snapshots = {width: WidthSnapshot(module, width) for width in case.widths}
    for width in reversed(case.widths):
        snapshots[width].restore()
        restored = width_states(module)
        module.set_width(width)
        assert restored == width_states(module), width
