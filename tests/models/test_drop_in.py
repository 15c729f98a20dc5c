"""Drop-in, as the stock projects' own tests see it.

What mmdet's and mmaction2's unit tests check of ResNet, MobileNetV2, FPN, the dense,
box and mask heads, the RoI extractor, X3D, SlowFast and the video heads (argument
handling, exception types, DCN and plugins, frozen stages, ``norm_eval``, ``with_cp``,
initialization, empty inputs), checked on the slimmable classes, at narrow widths too;
the argument rules hold for mmpretrain's twins as well.
"""
import inspect
from typing import Any, Dict, Tuple

import pytest
import torch
from mmaction.registry import MODELS as MMACTION_MODELS
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mutualnet_mm.models import build_stock
from mutualnet_mm.models.dcn import SlimmableDeformConv2dPack, SlimmableModulatedDeformConv2dPack
from mutualnet_mm.ops import Slimmable

from .equivalence import assert_matches_stock, max_difference, randomize_norms, stock_twin
from .test_video_backbones import X3D_ARGS, clip, slowfast_args

_OURS = ('width_range', 'depth_range', 'slim_outputs')


def _registered() -> Dict[Tuple[str, str], Tuple[type, type]]:
    """Every registered slimmable class with its stock class, by scope and name."""
    pairs = {}
    for scope, registry in (('mmdet', MMDET_MODELS), ('mmaction', MMACTION_MODELS),
                            ('mmpretrain', MMPRETRAIN_MODELS)):
        for name, cls in registry.module_dict.items():
            if name.startswith('Slimmable'):
                pairs[scope, name] = (cls, registry.get(name.removeprefix('Slimmable')))
    return pairs


def test_every_slimmable_class_has_its_stock_signature() -> None:
    pairs = _registered()
    assert {('mmdet', 'SlimmableResNet'), ('mmdet', 'SlimmableFPN'), ('mmaction', 'SlimmableX3D'),
            ('mmaction', 'SlimmableX3DHead'), ('mmpretrain', 'SlimmableResNet'),
            ('mmpretrain', 'SlimmableMobileNetV2'),
            ('mmpretrain', 'SlimmableLinearClsHead')} <= set(pairs)
    for name, (ours, stock) in pairs.items():
        assert issubclass(ours, stock), name
        mine = list(inspect.signature(ours).parameters.values())
        theirs = list(inspect.signature(stock).parameters.values())
        extras = [p for p in mine if p.name in _OURS]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extras), name
        assert [p for p in mine if p.name not in _OURS] == theirs, name
        if issubclass(ours, Slimmable):
            assert 'width_range' in [p.name for p in extras], name


def test_positional_arguments_keep_their_stock_meaning() -> None:
    fpn = build_stock(dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=32,
                           num_outs=5), 'mmdet').__class__  # stock FPN, for reference
    stock = fpn([64, 128, 256, 512], 32, 5, 1)
    ours = MMDET_MODELS.get('SlimmableFPN')([64, 128, 256, 512], 32, 5, 1)
    assert ours.start_level == stock.start_level == 1
    assert len(ours.lateral_convs) == len(stock.lateral_convs) == 3
    assert ours.stock_config(1.0)['start_level'] == 1

    slowfast = MMACTION_MODELS.get('SlimmableResNet3dSlowFast')(None, 4)
    assert (slowfast.resample_rate, slowfast.speed_ratio) == (4, 8)
    resnet = MMDET_MODELS.get('SlimmableResNet')(18, 3, None, 32)
    assert resnet.layer1[0].conv1.out_channels == 32
    resnet = MMPRETRAIN_MODELS.get('SlimmableResNet')(18, 3, 64, 32)  # stem, then base
    assert resnet.layer1[0].conv1.out_channels == 32
    mobilenet = MMPRETRAIN_MODELS.get('SlimmableMobileNetV2')
    assert mobilenet(0.5, (7,), -1, None, dict(type='BN')).widen_factor == 0.5
    with pytest.raises(TypeError):
        mobilenet(1.0, (7,), -1, None, dict(type='BN'), dict(type='ReLU6'), False, False,
                  None, (0.5, 1.0))  # no positional width_range
    head = MMDET_MODELS.get('SlimmableRPNHead')(16, 1, None, 2)
    assert (head.in_channels, head.num_convs) == (16, 2)
    x3d_head = MMACTION_MODELS.get('SlimmableX3DHead')(5, 432)
    assert (x3d_head.num_classes, x3d_head.in_channels) == (5, 432)
    with pytest.raises(TypeError):
        MMDET_MODELS.get('SlimmableFPN')([64], 32, 1, 0, -1, False, False, False, None, None,
                                         None, {}, None, True)  # no positional slim_outputs


#: Arguments the stock class refuses: (scope, stock type, arguments).
BAD_ARGUMENTS = {
    'resnet-depth': ('mmdet', 'ResNet', dict(depth=20)),
    'resnet-num-stages': ('mmdet', 'ResNet', dict(depth=50, num_stages=5)),
    'resnet-strides': ('mmdet', 'ResNet', dict(depth=50, strides=(1,), dilations=(1, 1),
                                               num_stages=3)),
    'resnet-pretrained': ('mmdet', 'ResNet', dict(depth=50, pretrained=0)),
    'resnet-style': ('mmdet', 'ResNet', dict(depth=50, style='tensorflow')),
    'resnet-dcn-stages': ('mmdet', 'ResNet', dict(depth=50, stage_with_dcn=(True,),
                                                  dcn=dict(type='DCN', deform_groups=1))),
    'resnet-plugin-stages': ('mmdet', 'ResNet', dict(depth=50, plugins=[dict(
        cfg=dict(type='ContextBlock', ratio=1 / 16), stages=(False, True, True),
        position='after_conv3')])),
    'mobilenet-v2-frozen': ('mmdet', 'MobileNetV2', dict(frozen_stages=8)),
    'mobilenet-v2-out-indices': ('mmdet', 'MobileNetV2', dict(out_indices=(8,))),
    'fpn-in-channels-tuple': ('mmdet', 'FPN', dict(in_channels=(8, 16), out_channels=8,
                                                   num_outs=2)),
    'fpn-too-few-outs': ('mmdet', 'FPN', dict(in_channels=[8, 16, 32], out_channels=8,
                                              num_outs=2, start_level=0)),
    'retina-head-missing': ('mmdet', 'RetinaHead', dict(num_classes=3)),
    'mask-head-upsample': ('mmdet', 'FCNMaskHead', dict(upsample_cfg=dict(type='wrong'))),
    'x3d-stages': ('mmaction', 'X3D', dict(num_stages=5, **X3D_ARGS)),
    'x3d-se-style': ('mmaction', 'X3D', dict(se_style=None, **X3D_ARGS)),
    'x3d-se-ratio': ('mmaction', 'X3D', dict(se_ratio=0, **X3D_ARGS)),
    'x3d-head-spatial-type': ('mmaction', 'X3DHead', dict(num_classes=3, in_channels=8,
                                                          spatial_type='wrong')),
    'cls-resnet-depth': ('mmpretrain', 'ResNet', dict(depth=20)),
    'cls-resnet-num-stages': ('mmpretrain', 'ResNet', dict(depth=18, num_stages=5)),
    'cls-mobilenet-v2-frozen': ('mmpretrain', 'MobileNetV2', dict(frozen_stages=8)),
}


@pytest.mark.parametrize('name', list(BAD_ARGUMENTS))
def test_what_the_stock_class_refuses_ours_refuses_with_the_same_type(name: str) -> None:
    scope, stock_type, arguments = BAD_ARGUMENTS[name]
    with pytest.raises(Exception) as stock_error:
        build_stock(dict(type=stock_type, **arguments), scope, device='meta')
    with pytest.raises(type(stock_error.value)):
        build_stock(dict(type=f'Slimmable{stock_type}', **arguments), scope, device='meta')


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_resnet_depth_error_names_the_depths(scope: str) -> None:
    with pytest.raises(KeyError) as error:
        build_stock(dict(type='SlimmableResNet', depth=20), scope)
    assert str(error.value) == ('SlimmableResNet depth must be one of '
                                '[18, 34, 50, 101, 152], got 20')
    assert isinstance(error.value, ValueError)  # what it raised before


def image(width: float = 1.0) -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize('dcn_type, twin', [('DCN', SlimmableDeformConv2dPack),
                                             ('DCNv2', SlimmableModulatedDeformConv2dPack)])
def test_resnet_dcn_is_stock_at_full_width_and_slims(dcn_type: str, twin: type) -> None:
    # mmcv's deformable convolutions run on CPU here (forward and backward).
    config = dict(type='SlimmableResNet', depth=50, stage_with_dcn=(False, True),
                  dcn=dict(type=dcn_type, deform_groups=1, fallback_on_stride=False),
                  out_indices=(1,), num_stages=2, strides=(1, 2), dilations=(1, 1))
    torch.manual_seed(0)
    model = build_stock(config, 'mmdet')
    assert isinstance(model.layer2[0].conv2, twin)
    stock = build_stock(dict(config, type='ResNet'), 'mmdet')
    randomize_norms(stock, seed=3)
    for layer in stock.modules():
        if hasattr(layer, 'conv_offset'):  # zero at init: deform for real
            nn.init.normal_(layer.conv_offset.weight, std=0.1)
    model.load_state_dict(stock.state_dict(), strict=True)
    model.eval()
    stock.eval()
    with torch.no_grad():
        assert max_difference(model(image()), stock(image())) <= 1e-5
    # the stock blocks pop fallback_on_stride from the config; ours keeps its own copy
    assert model.stock_config(1.0)['dcn']['fallback_on_stride'] is False
    for width in (0.5, 0.25):
        assert_matches_stock(model, width, image, atol=1e-4)
        assert model.layer2[0].conv2.active_out_channels == model.stock_config(width)[
            'base_channels'] * 2


#: A three-stage ResNet-50 (what the tests here need, at a third of the cost).
RESNET50_3 = dict(type='SlimmableResNet', depth=50, num_stages=3, strides=(1, 2, 2),
                  dilations=(1, 1, 1), out_indices=(0, 1, 2))
PLUGINS = {
    'DropBlock': dict(cfg=dict(type='DropBlock', drop_prob=0.1, block_size=3),
                      stages=(False, True, True), position='after_conv2'),
    'ContextBlock': dict(cfg=dict(type='ContextBlock', ratio=1 / 4),
                         stages=(False, True, True), position='after_conv3'),
    'NonLocal2d': dict(cfg=dict(type='NonLocal2d'), stages=(False, False, True),
                       position='after_conv2'),
}


def resnet_with(*plugins: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_stock(dict(RESNET50_3, plugins=[PLUGINS[p] for p in plugins]), 'mmdet')
    randomize_norms(model)
    return model


def test_slimmable_plugins_slim() -> None:
    model = resnet_with('DropBlock')
    assert model.fixed_plugins == []
    model.set_width(0.5)
    model.eval()  # DropBlock draws random masks in training
    stock = stock_twin(model, 0.5)
    stock.eval()
    with torch.no_grad():
        assert max_difference(model(image()), stock(image())) <= 1e-5


def test_other_plugins_run_full_width_and_set_width_names_them() -> None:
    model = resnet_with('ContextBlock', 'NonLocal2d')
    stock = build_stock(dict(model.stock_config(1.0), init_cfg=None), 'mmdet')
    model.load_state_dict(stock.state_dict(), strict=True)
    model.eval()
    stock.eval()
    with torch.no_grad():
        assert max_difference(model(image()), stock(image())) <= 1e-5
    model.set_width(1.0)
    with pytest.raises(ValueError, match=r'width 0.5: plugin layer2.0.context_block '
                                         r'\(ContextBlock\) does not slim'):
        model.set_width(0.5)


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
@pytest.mark.parametrize('widen_factor, low', [(0.5, 0.7), (0.25, 1.0), (1.0, 0.35)])
def test_mobilenet_v2_default_range_follows_widen_factor(widen_factor: float, low: float,
                                                         scope: str) -> None:
    model = build_stock(dict(type='SlimmableMobileNetV2', widen_factor=widen_factor), scope)
    assert model.width_range == pytest.approx((low, 1.0))
    randomize_norms(model)
    assert_matches_stock(model, low, image)


# ------------------------------------------------------- what the stock tests check
BACKBONES: Dict[str, Tuple[dict, str, Any]] = {
    'resnet50': (RESNET50_3, 'mmdet', image),
    'mobilenet_v2': (dict(type='SlimmableMobileNetV2'), 'mmdet', image),
    'x3d': (dict(type='SlimmableX3D', **X3D_ARGS), 'mmaction', clip),
    'slowfast': (dict(type='SlimmableResNet3dSlowFast', **slowfast_args()), 'mmaction', clip),
}
#: The stem and first-stage modules each backbone freezes with ``frozen_stages=1``.
FROZEN = {'resnet50': ('conv1', 'bn1', 'layer1'), 'mobilenet_v2': ('conv1', 'layer1'),
          'x3d': ('conv1_s', 'conv1_t', 'layer1'),
          'slowfast': ('slow_path.conv1', 'slow_path.layer1', 'fast_path.conv1',
                       'fast_path.layer1')}


def _backbone(name: str, **extra) -> nn.Module:
    config, scope, _ = BACKBONES[name]
    if name == 'slowfast':  # stock SlowFast takes these per pathway
        config = slowfast_args()
        for pathway in ('slow_pathway', 'fast_pathway'):
            config[pathway] = dict(config[pathway], **extra)
        config = dict(type='SlimmableResNet3dSlowFast', **config)
    else:
        config = dict(config, **extra)
    torch.manual_seed(0)
    return build_stock(config, scope)


@pytest.mark.parametrize('name', list(BACKBONES))
def test_frozen_stages_and_norm_eval_hold_at_a_width(name: str) -> None:
    model = _backbone(name, frozen_stages=1, norm_eval=True)
    model.set_width(0.5)
    model.train()
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    for prefix in FROZEN[name]:
        params = list(model.get_submodule(prefix).parameters())
        assert params and not any(p.requires_grad for p in params), prefix
    assert any(p.requires_grad for p in model.parameters())
    randomize_norms(model)
    assert_matches_stock(model, 0.5, BACKBONES[name][2])


@pytest.mark.parametrize('name', list(BACKBONES))
def test_with_cp_computes_the_same_at_a_width(name: str) -> None:
    plain, checkpointed = _backbone(name), _backbone(name, with_cp=True)
    assert any(getattr(m, 'with_cp', False) for m in checkpointed.modules())
    checkpointed.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, checkpointed):
        inputs = BACKBONES[name][2]().requires_grad_()
        model.set_width(0.5)
        model.train()
        out = model(inputs)
        sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
        grads.append(inputs.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_init_weights_zero_init_residual_at_full_width() -> None:
    model = _backbone('resnet50')
    model.init_weights()
    last_norms = [block.norm3 for layer in model.res_layers for block in getattr(model, layer)]
    assert all(torch.count_nonzero(n.weight) == 0 for n in last_norms)
    model.set_width(0.5)
    assert model(image())[0].abs().sum() > 0


def _roi_head(config: dict) -> nn.Module:
    module = build_stock(config, 'mmdet')
    module.set_width(0.5)
    return module.eval()


def test_heads_and_extractor_take_empty_roi_batches_at_a_width() -> None:
    box_head = _roi_head(dict(type='SlimmableShared2FCBBoxHead', in_channels=64,
                              fc_out_channels=96, num_classes=3))
    cls_score, bbox_pred = box_head(torch.zeros(0, 32, 7, 7))
    assert cls_score.shape == (0, 4) and bbox_pred.shape == (0, 12)
    mask_head = _roi_head(dict(type='SlimmableFCNMaskHead', num_convs=1, in_channels=64,
                               conv_out_channels=64, num_classes=3))
    assert mask_head(torch.zeros(0, 32, 14, 14)).shape == (0, 3, 28, 28)
    extractor = build_stock(dict(type='SlimmableSingleRoIExtractor', out_channels=64,
                                 featmap_strides=[4],
                                 roi_layer=dict(type='RoIAlign', output_size=7,
                                                sampling_ratio=0)), 'mmdet')
    assert extractor((torch.zeros(1, 32, 16, 16),), torch.zeros(0, 5)).shape == (0, 32, 7, 7)


@pytest.mark.parametrize('head, in_channels', [('SlimmableRPNHead', 64),
                                               ('SlimmableRetinaHead', 64)])
def test_dense_heads_output_one_map_per_level_at_a_width(head: str, in_channels: int) -> None:
    config = dict(type=head, in_channels=in_channels, feat_channels=in_channels)
    if head == 'SlimmableRetinaHead':
        config.update(num_classes=3, stacked_convs=1)
    module = build_stock(config, 'mmdet')
    module.set_width(0.5)
    levels = tuple(torch.randn(1, 32, s, s) for s in (16, 8, 4, 2, 1))
    cls_scores, bbox_preds = module(levels)
    anchors = module.num_base_priors
    assert [c.shape[1:] for c in cls_scores] == [
        (anchors * module.cls_out_channels, s, s) for s in (16, 8, 4, 2, 1)]
    assert [b.shape[1] for b in bbox_preds] == [anchors * 4] * 5


def test_stock_default_initialization_is_kept() -> None:
    retina = build_stock(dict(type='SlimmableRetinaHead', num_classes=3, in_channels=16,
                              feat_channels=16), 'mmdet')
    retina.init_weights()  # the stock default: class-score bias from a prior of 0.01
    assert torch.allclose(retina.retina_cls.bias, torch.full((27,), -4.59512))
    fpn = build_stock(dict(type='SlimmableFPN', in_channels=[16, 32], out_channels=16,
                           num_outs=2), 'mmdet')
    assert fpn.init_cfg == dict(type='Xavier', layer='Conv2d', distribution='uniform')
