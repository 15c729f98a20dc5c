"""Setting the width of whole models (detectors, wrappers, several slimmable parts)."""
import os

import mmdet
import pytest
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

import mutualnet_mm  # noqa: F401  (registers the modules)
from mutualnet_mm.models.backbones import SlimmableMobileNetV1, SlimmableResNet
from mutualnet_mm.ops import (
    Slimmable,
    get_width,
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
    with pytest.raises(ValueError, match=r'different widths \[0.5, 1.0\]'):
        get_width(model)
