"""Slimmable FPN and detection heads: equal to their stock twins, drop-in at width 1.0.

Also: whole tiny Faster/Mask R-CNNs in 'detector' mode train and predict at every width
and equal the stock detector built with the narrow channel counts, the mode switch of
:func:`slim_detector_config`, and what whole-detector slimming saves in multiply-adds.
"""
import copy
import os
from typing import Any, Callable, Dict, List, Tuple

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mutualnet_mm.models import build_stock
from mutualnet_mm.models.detector_slimming import slim_detector_config
from mutualnet_mm.ops import scale_channels, set_width, slice_state_dict

from .equivalence import assert_matches_stock, flatten, max_difference, randomize_norms

WIDTHS = (1.0, 0.75, 0.5, 0.25)
FEATURE_SIZES = (16, 8, 4, 2)
RESNET18_CHANNELS = [64, 128, 256, 512]


def resnet18_channels(width: float) -> List[int]:
    """What SlimmableResNet-18 delivers at ``width`` (its base doubles per stage)."""
    base = scale_channels(64, width)
    return [base * 2 ** i for i in range(4)]


def feature_maps(channels: List[int], sizes=FEATURE_SIZES, batch: int = 2) -> Tuple[Tensor]:
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.randn(batch, c, s, s, generator=generator)
                 for c, s in zip(channels, sizes))


def build(config: dict) -> nn.Module:
    torch.manual_seed(0)
    module = build_stock(config, 'mmdet')
    randomize_norms(module)
    return module


def without_prefix(config: dict) -> dict:
    """The stock config with the same arguments as a slimmable one."""
    stock = {k: v for k, v in config.items() if k not in ('width_range', 'slim_outputs')}
    stock['type'] = stock['type'].removeprefix('Slimmable')
    return stock


# ---------------------------------------------------------------------------- FPN
FPN_CONFIGS = {
    'backbone-only': dict(type='SlimmableFPN', in_channels=RESNET18_CHANNELS,
                          out_channels=64, num_outs=5),
    'whole-detector': dict(type='SlimmableFPN', in_channels=RESNET18_CHANNELS,
                           out_channels=64, num_outs=5, slim_outputs=True),
    'extra-convs-bn': dict(type='SlimmableFPN', in_channels=RESNET18_CHANNELS,
                           out_channels=72, num_outs=5, start_level=1,
                           add_extra_convs='on_input', slim_outputs=True,
                           norm_cfg=dict(type='BN')),
}


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('name', list(FPN_CONFIGS))
def test_fpn_matches_stock_on_backbone_features(name: str, width: float) -> None:
    config = FPN_CONFIGS[name]
    fpn = build(config)
    fpn.set_width(width)
    in_channels = resnet18_channels(width)
    stock = build_stock(fpn.stock_config(width, in_channels=in_channels), 'mmdet')
    stock.load_state_dict(slice_state_dict(fpn, stock.state_dict()), strict=True)
    inputs = feature_maps(in_channels)
    for training in (False, True):
        fpn.train(training)
        stock.train(training)
        with torch.no_grad():
            outputs = fpn(inputs)
            assert max_difference(outputs, stock(inputs)) <= 1e-5
    expected = config['out_channels']
    if config.get('slim_outputs'):
        expected = scale_channels(expected, width)
    assert [out.shape[1] for out in outputs] == [expected] * 5


@pytest.mark.parametrize('name', list(FPN_CONFIGS))
def test_fpn_is_drop_in_at_full_width(name: str) -> None:
    fpn = build(FPN_CONFIGS[name])
    stock = build_stock(without_prefix(FPN_CONFIGS[name]), 'mmdet')
    assert {k: v.shape for k, v in fpn.state_dict().items()} == \
        {k: v.shape for k, v in stock.state_dict().items()}
    assert fpn.stock_config(1.0) == without_prefix(FPN_CONFIGS[name])


def test_fpn_rejects_unslimmable_norm_and_bad_in_channels() -> None:
    with pytest.raises(ValueError, match="'GN'"):
        build(dict(FPN_CONFIGS['whole-detector'], norm_cfg=dict(type='GN', num_groups=8)))
    # outputs that never slim may use any norm
    build(dict(FPN_CONFIGS['backbone-only'], norm_cfg=dict(type='GN', num_groups=8)))
    with pytest.raises(ValueError, match='4 scales'):
        build(FPN_CONFIGS['backbone-only']).stock_config(0.5, in_channels=[32, 64])


# -------------------------------------------------------------------------- heads
def level_maps(channels: int, sizes=(8, 4)) -> Tuple[Tensor]:
    return feature_maps([channels] * len(sizes), sizes)


def roi_features(channels: int, size: int = 7, rois: int = 5) -> Tensor:
    return torch.randn(rois, channels, size, size, generator=torch.Generator().manual_seed(1))


ANCHORS = dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8])
RETINA_ANCHORS = dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=2,
                      ratios=[0.5, 1.0, 2.0], strides=[8, 16])

#: name: (config, inputs at a width); 72 channels round to 56 at 0.75 and 24 at 0.25.
HEAD_CASES: Dict[str, Tuple[dict, Callable[[float], Any]]] = {
    'rpn': (dict(type='SlimmableRPNHead', in_channels=72, feat_channels=72,
                 anchor_generator=ANCHORS),
            lambda w: level_maps(scale_channels(72, w))),
    'rpn-2convs': (dict(type='SlimmableRPNHead', in_channels=72, feat_channels=48, num_convs=2,
                        anchor_generator=ANCHORS),
                   lambda w: level_maps(scale_channels(72, w))),
    'retina-bn': (dict(type='SlimmableRetinaHead', num_classes=3, in_channels=72,
                       feat_channels=72, stacked_convs=2, norm_cfg=dict(type='BN'),
                       anchor_generator=RETINA_ANCHORS),
                  lambda w: level_maps(scale_channels(72, w))),
    'shared2fc': (dict(type='SlimmableShared2FCBBoxHead', in_channels=72, fc_out_channels=96,
                       num_classes=3),
                  lambda w: roi_features(scale_channels(72, w))),
    'shared4conv1fc-bn': (dict(type='SlimmableShared4Conv1FCBBoxHead', in_channels=72,
                               conv_out_channels=72, fc_out_channels=96, num_classes=3,
                               norm_cfg=dict(type='BN')),
                          lambda w: roi_features(scale_channels(72, w))),
    'convfc-branches': (dict(type='SlimmableConvFCBBoxHead', num_shared_convs=1,
                             num_cls_convs=1, num_reg_convs=1, num_reg_fcs=1, in_channels=72,
                             conv_out_channels=72, fc_out_channels=96, num_classes=3),
                        lambda w: roi_features(scale_channels(72, w))),
    'fcn-mask': (dict(type='SlimmableFCNMaskHead', num_convs=2, in_channels=72,
                      conv_out_channels=72, num_classes=3),
                 lambda w: roi_features(scale_channels(72, w), size=14, rois=3)),
    'fcn-mask-bilinear': (dict(type='SlimmableFCNMaskHead', num_convs=1, in_channels=72,
                               conv_out_channels=64, num_classes=3,
                               upsample_cfg=dict(type='bilinear', scale_factor=2)),
                          lambda w: roi_features(scale_channels(72, w), size=14, rois=3)),
}


@pytest.mark.parametrize('name', list(HEAD_CASES))
def test_head_matches_stock_and_keeps_prediction_sizes(name: str) -> None:
    config, make_inputs = HEAD_CASES[name]
    head = build(config)
    full_shapes = None
    for width in WIDTHS:
        assert_matches_stock(head, width, make_inputs)
        head.eval()
        with torch.no_grad():
            shapes = [t.shape for t in flatten(head(make_inputs(width)))]
        full_shapes = full_shapes or shapes
        assert shapes == full_shapes, f'width {width}: predictions shrank'


@pytest.mark.parametrize('name', list(HEAD_CASES))
def test_head_is_drop_in_at_full_width(name: str) -> None:
    config, make_inputs = HEAD_CASES[name]
    head = build(config)
    stock = build(without_prefix(config))
    assert {k: v.shape for k, v in head.state_dict().items()} == \
        {k: v.shape for k, v in stock.state_dict().items()}
    head.load_state_dict(stock.state_dict(), strict=True)
    head.set_width(1.0)
    head.eval()
    stock.eval()
    with torch.no_grad():
        inputs = make_inputs(1.0)
        assert max_difference(head(inputs), stock(inputs)) == 0


def test_box_head_flattened_roi_features_are_a_prefix() -> None:
    """The first c' channels of a flattened RoI are its first c' * 49 features."""
    head = build(HEAD_CASES['shared2fc'][0])
    head.set_width(0.5)
    channels = scale_channels(72, 0.5)
    stock = build_stock(head.stock_config(0.5), 'mmdet')
    assert stock.shared_fcs[0].in_features == channels * 49
    sliced = slice_state_dict(head, stock.state_dict())['shared_fcs.0.weight']
    assert torch.equal(sliced, head.shared_fcs[0].weight[:96 // 2, :channels * 49])
    features = roi_features(72)
    assert torch.equal(features[:, :channels].flatten(1), features.flatten(1)[:, :channels * 49])


def test_heads_reject_what_cannot_slim() -> None:
    with pytest.raises(ValueError, match="'GN'"):
        build(dict(HEAD_CASES['shared4conv1fc-bn'][0], norm_cfg=dict(type='GN', num_groups=4)))
    with pytest.raises(ValueError, match="'carafe'"):
        build(dict(HEAD_CASES['fcn-mask'][0], upsample_cfg=dict(type='carafe', scale_factor=2)))


def test_roi_extractor_pools_the_active_channels() -> None:
    config = dict(type='SlimmableSingleRoIExtractor', out_channels=64, featmap_strides=[4, 8],
                  roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0))
    extractor = build(config)
    stock = build(without_prefix(config))
    rois = torch.tensor([[0, 2.0, 2.0, 20.0, 24.0], [1, 0.0, 0.0, 60.0, 60.0]])
    feats = feature_maps([64, 64], sizes=(16, 8))
    assert torch.equal(extractor(feats, rois), stock(feats, rois))
    narrow = tuple(f[:, :16] for f in feats)
    assert torch.equal(extractor(narrow, rois), stock(feats, rois)[:, :16])
    assert extractor.out_channels == 64
    with pytest.raises(ValueError, match='at most out_channels=64'):
        extractor(feature_maps([72, 72], sizes=(16, 8)), rois)


# ---------------------------------------------------------------------- detectors
@pytest.fixture
def mmdet_scope():
    """Detectors build their parts (data preprocessor, RoI layers) in mmdet's scope."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


_BASE_MODELS = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs', '_base_',
                            'models')


def tiny_detector_config(name: str, neck_channels: int = 64, fc_channels: int = 128) -> dict:
    """mmdet's base Faster/Mask R-CNN config on ResNet-18 with few channels and RoIs."""
    model = Config.fromfile(os.path.join(_BASE_MODELS, name)).model
    model['backbone'].update(depth=18, init_cfg=None)
    model['neck'].update(in_channels=RESNET18_CHANNELS, out_channels=neck_channels)
    model['rpn_head'].update(in_channels=neck_channels, feat_channels=neck_channels)
    roi_head = model['roi_head']
    roi_head['bbox_roi_extractor']['out_channels'] = neck_channels
    roi_head['bbox_head'].update(in_channels=neck_channels, fc_out_channels=fc_channels,
                                 num_classes=3)
    if 'mask_head' in roi_head:
        roi_head['mask_roi_extractor']['out_channels'] = neck_channels
        roi_head['mask_head'].update(in_channels=neck_channels,
                                     conv_out_channels=neck_channels, num_classes=3)
    model['train_cfg']['rpn']['sampler']['num'] = 64
    model['train_cfg']['rpn_proposal'].update(nms_pre=200, max_per_img=50)
    model['train_cfg']['rcnn']['sampler']['num'] = 16
    model['test_cfg']['rpn'].update(nms_pre=200, max_per_img=50)
    model['test_cfg']['rcnn']['max_per_img'] = 10
    return model


def stock_detector_config(model: nn.Module, stock_cfg: dict, width: float) -> dict:
    """The stock detector computing the 'detector'-mode ``model`` at ``width``."""
    cfg = copy.deepcopy(stock_cfg)
    cfg['backbone'] = model.backbone.stock_config(width)
    cfg['neck'] = model.neck.stock_config(width, in_channels=resnet18_channels(width))
    cfg['rpn_head'] = model.rpn_head.stock_config(width)
    roi_head = cfg['roi_head']
    for part in ('bbox', 'mask'):
        if f'{part}_head' in roi_head:
            roi_head[f'{part}_head'] = getattr(model.roi_head, f'{part}_head').stock_config(width)
            roi_head[f'{part}_roi_extractor']['out_channels'] = cfg['neck']['out_channels']
    return cfg


@pytest.mark.parametrize('name', ['faster-rcnn_r50_fpn.py', 'mask-rcnn_r50_fpn.py'])
def test_whole_detector_trains_and_predicts_at_every_width(name: str, mmdet_scope) -> None:
    with_mask = 'mask' in name
    stock_cfg = tiny_detector_config(name)
    torch.manual_seed(0)
    model = MODELS.build(slim_detector_config(stock_cfg, 'detector'))
    randomize_norms(model)
    packed = demo_mm_inputs(2, [[3, 64, 64], [3, 48, 64]], num_items=[2, 3], num_classes=3,
                            with_mask=with_mask)
    for width in (1.0, 0.25):
        set_width(model, width)
        model.train()
        model.zero_grad()
        losses = model(**model.data_preprocessor(packed, True), mode='loss')
        assert ('loss_mask' in losses) == with_mask
        loss, _ = model.parse_losses(losses)
        assert torch.isfinite(loss)
        loss.backward()
        assert model.roi_head.bbox_head.fc_cls.weight.grad.abs().sum() > 0
        channels = scale_channels(64, width)
        assert model.neck.fpn_convs[0].conv.weight.grad[channels:].abs().sum() == 0

        # eval: the detector is the stock detector with the narrow channel counts
        model.eval()
        stock = MODELS.build(stock_detector_config(model, stock_cfg, width))
        stock.load_state_dict(slice_state_dict(model, stock.state_dict()), strict=True)
        stock.eval()
        data = model.data_preprocessor(packed, False)
        with torch.no_grad():
            assert [f.shape[1] for f in model.extract_feat(data['inputs'])] == [channels] * 5
            predictions = model(**copy.deepcopy(data), mode='predict')
            expected = stock(**copy.deepcopy(data), mode='predict')
        for got, want in zip(predictions, expected):
            got, want = got.pred_instances, want.pred_instances
            assert len(got) == len(want) > 0
            assert max_difference([got.bboxes, got.scores], [want.bboxes, want.scores]) < 1e-4
            assert torch.equal(got.labels, want.labels)
            if with_mask:
                assert got.masks.shape[-2:] == want.masks.shape[-2:]
                assert (got.masks != want.masks).float().mean() < 1e-3


def test_backbone_only_detector_keeps_pyramid_and_heads_full(mmdet_scope) -> None:
    torch.manual_seed(0)
    model = MODELS.build(slim_detector_config(tiny_detector_config('faster-rcnn_r50_fpn.py'),
                                              'backbone'))
    packed = demo_mm_inputs(1, [[3, 64, 64]], num_items=[2], num_classes=3)
    set_width(model, 0.25)
    data = model.data_preprocessor(packed, True)
    assert [f.shape[1] for f in model.backbone(data['inputs'])] == resnet18_channels(0.25)
    assert [f.shape[1] for f in model.extract_feat(data['inputs'])] == [64] * 5
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)


# ------------------------------------------------------------------- mode switch
def test_switch_converts_the_parts_each_mode_slims() -> None:
    stock_cfg = tiny_detector_config('mask-rcnn_r50_fpn.py')
    backbone_only = slim_detector_config(stock_cfg, 'backbone')
    whole = slim_detector_config(stock_cfg, 'detector')
    assert stock_cfg['neck']['type'] == 'FPN'  # not modified
    assert backbone_only['backbone']['type'] == whole['backbone']['type'] == 'SlimmableResNet'
    assert backbone_only['neck']['type'] == whole['neck']['type'] == 'SlimmableFPN'
    assert backbone_only['neck']['slim_outputs'] is False
    assert whole['neck']['slim_outputs'] is True
    assert backbone_only['rpn_head'] == stock_cfg['rpn_head']
    assert backbone_only['roi_head'] == stock_cfg['roi_head']
    assert whole['rpn_head']['type'] == 'SlimmableRPNHead'
    assert {whole['roi_head'][key]['type'] for key in ('bbox_roi_extractor', 'bbox_head',
                                                       'mask_roi_extractor', 'mask_head')} == \
        {'SlimmableSingleRoIExtractor', 'SlimmableShared2FCBBoxHead', 'SlimmableFCNMaskHead'}
    assert slim_detector_config(whole, 'detector') == whole  # idempotent
    # the rest of each part is unchanged
    assert {k: v for k, v in whole['rpn_head'].items() if k != 'type'} == \
        {k: v for k, v in stock_cfg['rpn_head'].items() if k != 'type'}

    retina = Config.fromfile(os.path.join(_BASE_MODELS, 'retinanet_r50_fpn.py')).model
    assert slim_detector_config(retina, 'detector')['bbox_head']['type'] == \
        'SlimmableRetinaHead'


def test_switch_rejects_unknown_modes_and_unslimmable_parts() -> None:
    stock_cfg = tiny_detector_config('faster-rcnn_r50_fpn.py')
    with pytest.raises(ValueError, match="'whole'"):
        slim_detector_config(stock_cfg, 'whole')
    stock_cfg['roi_head']['bbox_head']['type'] = 'SABLHead'
    slim_detector_config(stock_cfg, 'backbone')  # stock heads stay stock
    with pytest.raises(ValueError, match="roi_head.bbox_head of type 'SABLHead'"):
        slim_detector_config(stock_cfg, 'detector')


# ----------------------------------------------------------------------- cost
def count_multiply_adds(model: nn.Module, run: Callable[[], Any]) -> int:
    """Multiply-adds of every conv, deconv and linear layer during ``run()``."""
    total = 0

    def hook(layer: nn.Module, args: Tuple[Tensor], output: Tensor) -> None:
        nonlocal total
        x = args[0]
        if isinstance(layer, nn.Linear):
            total += output.numel() * x.shape[-1]
        elif isinstance(layer, nn.ConvTranspose2d):
            total += x.numel() * output.shape[1] * layer.weight[0, 0].numel()
        else:
            total += output.numel() * x.shape[1] // layer.groups * layer.weight[0, 0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return total


def test_whole_detector_slimming_costs_far_less_than_backbone_only(mmdet_scope) -> None:
    # mmdet's own channel counts (FPN 256, box FCs 1024), as the cost shares matter here
    stock_cfg = tiny_detector_config('mask-rcnn_r50_fpn.py', neck_channels=256,
                                     fc_channels=1024)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    proposals = InstanceData(bboxes=torch.tensor([[4.0, 4, 40, 40], [10, 20, 60, 50],
                                                  [0, 0, 30, 60], [30, 30, 62, 62]]))
    costs = {}
    for mode in ('backbone', 'detector'):
        torch.manual_seed(0)
        model = MODELS.build(slim_detector_config(stock_cfg, mode)).eval()

        def run(model=model):
            feats = model.extract_feat(images)
            model.rpn_head(feats)
            model.roi_head(feats, [proposals])

        for width in (1.0, 0.25):
            set_width(model, width)
            costs[mode, width] = count_multiply_adds(model, run)
    for (mode, width), cost in costs.items():
        print(f'{mode:>8} mode, width {width}: {cost / 1e6:8.1f} M multiply-adds')
    assert costs['backbone', 1.0] == costs['detector', 1.0]
    ratio = costs['detector', 0.25] / costs['backbone', 0.25]
    print(f'whole-detector / backbone-only at width 0.25: {ratio:.3f}')
    assert ratio < 0.2
