"""MobileNetV1 (layout of the reference checkpoint) and the MobileNet width floors."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mutualnet_mm.models.backbones import (
    MobileNetV1,
    SlimmableMobileNetV1,
    SlimmableMobileNetV2,
)

from .equivalence import assert_matches_stock, randomize_norms

_BLOCK_CHANNELS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


def test_mobilenet_v1_layout_matches_the_reference_checkpoint() -> None:
    shapes = {k: tuple(v.shape) for k, v in MobileNetV1().state_dict().items()
              if k.endswith('.weight')}
    expected = {'stem.conv.weight': (32, 3, 3, 3), 'stem.bn.weight': (32,)}
    in_channels = 32
    for i, out_channels in enumerate(_BLOCK_CHANNELS):
        expected.update({f'layers.{i}.dw.conv.weight': (in_channels, 1, 3, 3),
                         f'layers.{i}.dw.bn.weight': (in_channels,),
                         f'layers.{i}.pw.conv.weight': (out_channels, in_channels, 1, 1),
                         f'layers.{i}.pw.bn.weight': (out_channels,)})
        in_channels = out_channels
    assert shapes == expected
    assert not any(k.endswith('conv.bias') for k in MobileNetV1().state_dict())


def test_mobilenet_v1_stages() -> None:
    model = MobileNetV1(widen_factor=0.5, out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 16, 16), (128, 8, 8), (256, 4, 4),
                                                  (512, 2, 2)]
    assert [len(model.stage_blocks(s)) for s in range(4)] == [3, 2, 6, 2]
    assert len(MobileNetV1(out_indices=(3,)).eval()(torch.randn(1, 3, 32, 32))) == 1


def test_mobilenet_v1_frozen_stages_and_norm_eval() -> None:
    model = MobileNetV1(frozen_stages=1, norm_eval=True).train()
    frozen = ['stem'] + [f'layers.{i}' for i in range(3)]
    for name, param in model.named_parameters():
        assert param.requires_grad != any(name.startswith(f + '.') for f in frozen), name
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.layers[3].pw.conv.training


@pytest.mark.parametrize('kwargs, message', [(dict(out_indices=(4,)), 'out_indices'),
                                             (dict(frozen_stages=5), 'frozen_stages')])
def test_mobilenet_v1_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MobileNetV1(**kwargs)


def test_slimmable_mobilenet_v1_is_stock_at_widen_factor_times_width() -> None:
    model = SlimmableMobileNetV1(widen_factor=0.75, out_indices=(2, 3))
    assert model.stock_config(0.5) == dict(type='MobileNetV1', out_indices=(2, 3),
                                           widen_factor=0.375)
    assert model.channel_plan(0.5)['layers.12.pw.conv'] == 384


def test_slimmable_mobilenet_v2_keeps_1280_last_channels() -> None:
    model = SlimmableMobileNetV2()
    assert {model.channel_plan(w)['conv2.conv'] for w in (1.0, 0.75, 0.5, 0.35)} == {1280}
    assert model.channel_plan(0.5)['layer7.0.linear_conv.conv'] == 160


def test_slimmable_mobilenet_v2_rejects_widths_that_add_shortcuts() -> None:
    with pytest.raises(ValueError, match='cannot run at width 0.25 with widen_factor 1'):
        SlimmableMobileNetV2(width_range=(0.25, 1.0))
    SlimmableMobileNetV2(width_range=(0.28, 1.0))  # just above the floor (about 0.278)


def test_slimmable_mobilenet_v2_frozen_stages_match_stock() -> None:
    torch.manual_seed(0)
    model = SlimmableMobileNetV2(frozen_stages=2, norm_eval=True, out_indices=(2, 7))
    randomize_norms(model)
    assert_matches_stock(model, 0.5, lambda _: torch.randn(2, 3, 32, 32))
    assert not model.layer2[0].depthwise_conv.conv.weight.requires_grad
