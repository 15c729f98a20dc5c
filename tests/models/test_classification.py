"""Slimmable classifiers in mmpretrain: the stock network at every width, drop-in at 1.0."""
import inspect

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mutualnet_mm
from mutualnet_mm.models.backbones import SlimmableResNet as DetSlimmableResNet
from mutualnet_mm.models.backbones.resnet import InvalidDepthError
from mutualnet_mm.models.classification import SlimmableClsMobileNetV2, SlimmableClsResNet

from .equivalence import assert_matches_stock, max_difference, randomize_norms

CASES = {
    'resnet18': (dict(type='SlimmableResNet', depth=18), (1.0, 0.6, 0.25)),
    'resnet50': (dict(type='SlimmableResNet', depth=50), (0.5, 0.25)),
    'mobilenet_v2': (dict(type='SlimmableMobileNetV2'), (1.0, 0.75, 0.35)),
    'mobilenet_v1': (dict(type='SlimmableMobileNetV1', out_indices=(3,)), (1.0, 0.5, 0.25)),
}


def build(config: dict) -> torch.nn.Module:
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        module = MODELS.build(dict(config))
    randomize_norms(module)
    return module


def image(width: float) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('case', sorted(CASES))
def test_each_width_is_the_stock_mmpretrain_network(case: str) -> None:
    config, widths = CASES[case]
    module = build(config)
    for width in widths:
        assert_matches_stock(module, width, image)


@pytest.mark.parametrize('stock_type, config', [
    ('ResNet', dict(type='SlimmableResNet', depth=18)),
    ('MobileNetV2', dict(type='SlimmableMobileNetV2')),
])
def test_full_width_is_a_drop_in_for_mmpretrain(stock_type: str, config: dict) -> None:
    slim, stock = build(config), build({**config, 'type': stock_type})
    slim.eval()  # (mmpretrain's ResNet.train returns None)
    stock.eval()
    assert list(slim.state_dict()) == list(stock.state_dict())
    stock.load_state_dict(slim.state_dict())
    with torch.no_grad():
        assert max_difference(slim(image(1.0)), stock(image(1.0))) == 0.0
    assert isinstance(slim, (SlimmableClsResNet, SlimmableClsMobileNetV2))


def test_resnet_names_match_mmdet_backbone() -> None:
    """The hand-off to detection: the classifier's backbone tensors are mmdet's names."""
    classifier_backbone = build(dict(type='SlimmableResNet', depth=50))
    detector_backbone = DetSlimmableResNet(depth=50)
    cls_state, det_state = classifier_backbone.state_dict(), detector_backbone.state_dict()
    assert list(cls_state) == list(det_state)
    assert all(cls_state[k].shape == det_state[k].shape for k in cls_state)


def test_head_follows_the_width_and_keeps_the_classes() -> None:
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='SlimmableResNet', depth=18),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='SlimmableLinearClsHead', num_classes=7, in_channels=512))).eval()
        mutualnet_mm.set_width(classifier, 0.25)  # backbone 128 channels out
        logits = classifier(image(0.25), mode='tensor')
        stock_head = MODELS.build(dict(type='LinearClsHead', num_classes=7, in_channels=128))
    assert logits.shape == (2, 7)
    stock_head.fc.weight.data.copy_(classifier.head.fc.weight[:, :128])
    stock_head.fc.bias.data.copy_(classifier.head.fc.bias)
    with torch.no_grad():
        expected = stock_head(classifier.neck(classifier.backbone(image(0.25))))
    torch.testing.assert_close(logits, expected)


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(InvalidDepthError, match='depth must be one of .*got 19'):
        build(dict(type='SlimmableResNet', depth=19))
    with pytest.raises(ValueError, match='cannot run at width 0.25'):
        build(dict(type='SlimmableMobileNetV2', width_range=(0.25, 1.0)))
    module = build(dict(type='SlimmableResNet', depth=18, width_range=(0.5, 1.0)))
    with pytest.raises(ValueError, match='outside the range'):
        module.set_width(0.25)


def test_arguments_follow_the_detection_twins_rules() -> None:
    """Stock arguments in the stock order, ``width_range`` keyword-only, the same defaults."""
    for cls in (SlimmableClsResNet, SlimmableClsMobileNetV2):
        parameters = inspect.signature(cls).parameters
        assert parameters['width_range'].kind is inspect.Parameter.KEYWORD_ONLY
    assert SlimmableClsResNet(18, 3, 32).stem_channels == 32  # in_channels, stem_channels
    assert SlimmableClsMobileNetV2(1.4).width_range == pytest.approx((0.25, 1.0))
    assert SlimmableClsMobileNetV2(0.35).width_range == (1.0, 1.0)
