"""Setting the width of whole models (detectors, wrappers, several slimmable parts)."""
import os

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

import mutualnet_mm  # noqa: F401  (registers the modules)
from mutualnet_mm.models.backbones import SlimmableMobileNetV1, SlimmableResNet
from mutualnet_mm.ops import (
    Slimmable,
    WidthSnapshot,
    get_width,
    get_widths,
    iter_slimmable_layers,
    set_width,
    slimmable_modules,
    width_range_of,
)

_FASTER_RCNN = os.path.join(os.path.dirname(mmdet.__file__),
                            '.mim/configs/_base_/models/faster-rcnn_r50_fpn.py')


@pytest.fixture(scope='module')
def detector() -> nn.Module:
    """A stock Faster R-CNN whose backbone is a slimmable ResNet-18."""
    model_cfg = Config.fromfile(_FASTER_RCNN).model
    model_cfg.backbone = dict(type='SlimmableResNet', depth=18, width_range=(0.25, 1.0))
    model_cfg.neck.in_channels = [64, 128, 256, 512]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(model_cfg)


def test_set_width_on_a_detector(detector: nn.Module) -> None:
    assert [name for name, _ in slimmable_modules(detector)] == ['backbone']
    assert width_range_of(detector) == (0.25, 1.0)
    set_width(detector, 0.5)
    assert get_width(detector) == 0.5
    parts = [m for m in detector.modules() if isinstance(m, Slimmable)]
    assert parts and all(part.width == 0.5 for part in parts)
    plan = detector.backbone.channel_plan(0.5)
    assert plan['layer4.1.conv2'] == 256
    for name, layer in iter_slimmable_layers(detector.backbone):
        if layer.slim_out:
            assert layer.active_out_channels == plan.get(name), name
    set_width(detector, 1.0)
    assert detector.backbone.layer4[1].conv2.active_out_channels == 512
    with pytest.raises(ValueError, match=r'width 0.2 is outside the range \[0.25, 1\]'):
        set_width(detector, 0.2)
    assert get_width(detector) == 1.0


def test_width_range_is_the_intersection() -> None:
    model = nn.ModuleDict(dict(
        image=SlimmableResNet(depth=18, width_range=(0.25, 0.9)),
        other=SlimmableMobileNetV1(width_range=(0.5, 1.0))))
    assert width_range_of(model) == (0.5, 0.9)
    set_width(model, 0.75)
    assert model['image'].width == model['other'].width == 0.75
    for width in (0.3, 1.0):
        with pytest.raises(ValueError, match=rf'width {width:g} is outside the range '
                                             r'\[0.5, 0.9\] allowed by ModuleDict'):
            set_width(model, width)
    assert get_width(model) == 0.75


def test_non_overlapping_ranges_are_an_error() -> None:
    model = nn.ModuleDict(dict(
        image=SlimmableResNet(depth=18, width_range=(0.25, 0.4)),
        other=SlimmableMobileNetV1(width_range=(0.5, 1.0))))
    with pytest.raises(ValueError, match='do not overlap'):
        width_range_of(model)
    with pytest.raises(ValueError, match='do not overlap'):
        set_width(model, 0.45)


def test_model_without_slimmable_part_is_an_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(ValueError, match='Sequential has no slimmable module'):
        set_width(model, 0.5)
    with pytest.raises(ValueError, match='has no slimmable module'):
        width_range_of(model)


def test_get_width_of_parts_at_different_widths() -> None:
    model = nn.ModuleDict(dict(a=SlimmableMobileNetV1(), b=SlimmableMobileNetV1()))
    model['a'].set_width(0.5)
    with pytest.raises(ValueError, match=r'different widths \(backbone: \[\], others: '
                                         r'\[0.5, 1.0\]\)'):
        get_width(model)


@pytest.fixture(scope='module')
def whole_detector() -> nn.Module:
    """A Faster R-CNN whose backbone, neck and heads all slim."""
    from mutualnet_mm.models.detector_slimming import slim_detector_config
    model_cfg = Config.fromfile(_FASTER_RCNN).model
    model_cfg.backbone = dict(type='ResNet', depth=18, width_range=(0.25, 1.0))
    model_cfg.neck.in_channels = [64, 128, 256, 512]
    model_cfg.neck.width_range = (0.25, 1.0)
    for part in (model_cfg.rpn_head, model_cfg.roi_head.bbox_head):
        part.width_range = (0.25, 1.0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(slim_detector_config(model_cfg, 'detector'))


def test_decoupled_widths_set_the_backbone_and_the_other_parts_apart(whole_detector) -> None:
    set_width(whole_detector, 0.5, head_width=0.25)
    widths = {name: part.width for name, part in slimmable_modules(whole_detector)}
    assert widths.pop('backbone') == 0.5
    assert widths and set(widths.values()) == {0.25}  # neck, rpn_head, roi_head parts
    assert get_widths(whole_detector) == (0.5, 0.25)
    with pytest.raises(ValueError, match='backbone at width 0.5 and its other parts at 0.25'):
        get_width(whole_detector)
    # the neck takes the backbone's channels at 0.5 and gives 0.25 of its own
    x = torch.zeros(1, 3, 64, 64)
    features = whole_detector.neck(whole_detector.backbone(x))
    assert {f.shape[1] for f in features} == {64}  # 256 * 0.25
    with pytest.raises(ValueError, match=r'width 0.2 is outside the range \[0.25, 1\] '
                                         r'allowed by FasterRCNN \(head width\)'):
        set_width(whole_detector, 0.5, head_width=0.2)
    set_width(whole_detector, 0.75)  # without a head width every part follows
    assert get_widths(whole_detector) == (0.75, 0.75)
    assert get_width(whole_detector) == 0.75


def test_width_snapshot_restores_decoupled_widths(whole_detector) -> None:
    snapshot = WidthSnapshot(whole_detector, 1.0, head_width=0.5)
    set_width(whole_detector, 0.25)
    snapshot.restore()
    assert get_widths(whole_detector) == (1.0, 0.5)
    assert whole_detector.rpn_head.rpn_conv.active_out_channels == 128
    assert (snapshot.width, snapshot.head_width) == (1.0, 0.5)
