"""Tools users apply to models see a slimmable module as its stock twin at every width.

``torch.fx.symbolic_trace`` (what quantization and compression tools trace with),
``torch.ao.quantization.fuse_modules``, mmcv's and mmengine's complexity counters and
mmengine's ``convert_sync_batchnorm`` (a config's ``sync_bn``).
"""
import inspect
from typing import Any, Optional

import pytest
import torch
import torch.fx as fx
from mmcv.cnn import get_model_complexity_info as mmcv_complexity
from mmengine.analysis import get_model_complexity_info as mmengine_complexity
from mmengine.model import convert_sync_batchnorm
from torch import nn
from torch.ao.quantization import fuse_modules

from mutualnet_mm.models import build_stock
from mutualnet_mm.ops import (
    SlimmableBatchNorm2d,
    SlimmableConv2d,
    SlimmableLayer,
    SlimmableSyncBatchNorm,
)
from mutualnet_mm.ops.fusion import SlimmableConvReLU2d

from .equivalence import assert_matches_stock, max_difference, randomize_norms, stock_twin
from .test_contract import CASES
from .test_video_backbones import X3D_ARGS

#: Modules whose stock forward branches on a traced value itself (``ConvFCBBoxHead``
#: tests ``x.dim() > 2``): no FX trace exists for their stock twins either.
STOCK_UNTRACEABLE = ('SlimmableShared2FCBBoxHead', 'SlimmableShared4Conv1FCBBoxHead',
                     'SlimmableConvFCBBoxHead')


def symbolic_trace(module: nn.Module, inputs: Any) -> fx.GraphModule:
    """FX-trace ``module``; a tuple input (pyramid levels) is traced element by element."""
    concrete: Optional[dict] = None
    if isinstance(inputs, tuple):
        name = next(iter(inspect.signature(module.forward).parameters))
        concrete = {name: tuple(fx.PH for _ in inputs)}
    return fx.symbolic_trace(module, concrete_args=concrete)


def _trace_params():
    return [pytest.param(name, width, id=f'{name}-{width}')
            for name, case in CASES.items() if name not in STOCK_UNTRACEABLE
            for width in (case.widths[0], case.widths[-1])]


@pytest.mark.parametrize('name, width', _trace_params())
def test_fx_trace_equals_eager_at_every_width(name: str, width: float) -> None:
    case = CASES[name]
    module = case.build()
    module.set_width(width)
    module.eval()
    inputs = case.make_inputs(width)
    traced = symbolic_trace(module, inputs)
    with torch.no_grad():
        assert max_difference(traced(inputs), case.run(module, inputs)) == 0


@pytest.mark.parametrize('name', STOCK_UNTRACEABLE)
def test_fx_fails_only_where_the_stock_twin_fails(name: str) -> None:
    case = CASES[name]
    stock = case.build_plain_stock()
    with pytest.raises(fx.proxy.TraceError):
        fx.symbolic_trace(stock)


def test_fx_trace_keeps_the_layer_checks() -> None:
    case = CASES['SlimmableResNet-18']
    traced = fx.symbolic_trace(case.build())
    with pytest.raises(ValueError, match='got an input with 4 channels; it accepts exactly 3'):
        traced(torch.zeros(1, 4, 32, 32))


@pytest.mark.parametrize('width', (1.0, 0.5))
def test_fuse_modules_folds_conv_bn_relu_and_still_slims(width: float) -> None:
    model = build_stock(dict(type='SlimmableResNet', depth=18), 'mmdet')
    randomize_norms(model)
    model.eval()
    model.set_width(width)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    names = [['conv1', 'bn1', 'relu']] + [
        [f'layer1.{i}.conv{k}', f'layer1.{i}.bn{k}'] for i in range(2) for k in (1, 2)]
    fused = fuse_modules(model, names)
    assert isinstance(fused.conv1, SlimmableConvReLU2d)
    assert isinstance(fused.layer1[0].bn1, nn.Identity)
    fused.set_width(width)
    with torch.no_grad():
        assert max_difference(fused(x), expected) <= 1e-5
    # mmcv counts the fused stem as the stock conv it runs
    stem = nn.Conv2d(3, fused.conv1.active_out_channels or 64, 7, stride=2, padding=3)
    assert mmcv_complexity(nn.Sequential(fused.conv1), (3, 32, 32), as_strings=False,
                           print_per_layer_stat=False)[0] == \
        mmcv_complexity(nn.Sequential(stem), (3, 32, 32), as_strings=False,
                        print_per_layer_stat=False)[0]


def test_fuse_modules_refuses_training_mode() -> None:
    block = nn.Sequential(SlimmableConv2d(3, 8, 3), SlimmableBatchNorm2d(8), nn.ReLU())
    with pytest.raises(NotImplementedError, match='eval mode only'):
        fuse_modules(block.train(), [['0', '1', '2']], inplace=False)


COMPLEXITY_CASES = {
    'resnet50': (dict(type='SlimmableResNet', depth=50), 'mmdet', (3, 64, 64)),
    'mobilenet_v2': (dict(type='SlimmableMobileNetV2'), 'mmdet', (3, 64, 64)),  # depthwise
    'x3d': (dict(type='SlimmableX3D', **X3D_ARGS), 'mmaction', (3, 4, 32, 32)),
    'mask_head': (dict(type='SlimmableFCNMaskHead', num_convs=1, in_channels=64,
                       conv_out_channels=64, num_classes=3), 'mmdet', (64, 14, 14)),  # deconv
}


@pytest.mark.parametrize('width', (1.0, 0.5))
@pytest.mark.parametrize('name', list(COMPLEXITY_CASES))
def test_complexity_counters_count_the_stock_twin(name: str, width: float) -> None:
    config, scope, shape = COMPLEXITY_CASES[name]
    module = build_stock(config, scope)
    module.set_width(width)
    stock = module.build_stock(width)
    if name == 'mask_head':  # its inputs follow the width
        shape = (stock.in_channels,) + shape[1:]
    module.eval()
    stock.eval()

    def mmcv_flops(model: nn.Module) -> float:
        return mmcv_complexity(model, shape, print_per_layer_stat=False, as_strings=False)[0]

    def mmengine_flops(model: nn.Module) -> int:
        inputs = (torch.randn(1, *shape),)
        return mmengine_complexity(model, inputs=inputs, show_table=False,
                                   show_arch=False)['flops']

    assert mmcv_flops(module) == mmcv_flops(stock) > 0
    assert mmengine_flops(module) == mmengine_flops(stock) > 0


def test_convert_sync_batchnorm_keeps_the_layers_slimmable() -> None:
    torch.manual_seed(0)
    model = build_stock(dict(type='SlimmableResNet', depth=18), 'mmdet')
    randomize_norms(model)
    model = convert_sync_batchnorm(model)
    assert type(model.bn1) is nn.SyncBatchNorm
    model.set_width(0.5)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(isinstance(m, SlimmableSyncBatchNorm) for m in norms)
    assert_matches_stock(model, 0.5, lambda w: torch.randn(2, 3, 32, 32))
    # the twins share the converted norms' tensors: the checkpoint is unchanged
    stock = stock_twin(model, 1.0)
    assert set(stock.state_dict()) == set(model.state_dict())
    assert all(isinstance(m, SlimmableLayer) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)))


def test_fx_traces_the_video_head_on_slimmed_features() -> None:
    head = build_stock(dict(type='SlimmableX3DHead', num_classes=5, in_channels=432),
                       'mmaction').eval()
    features = torch.randn(2, 216, 1, 2, 2)  # what SlimmableX3D delivers at a width
    with torch.no_grad():
        assert max_difference(fx.symbolic_trace(head)(features), head(features)) == 0
