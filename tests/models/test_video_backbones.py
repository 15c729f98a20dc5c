"""Slimmable X3D and SlowFast: at every width they compute the stock mmaction2 network."""
import pytest
import torch
from mmaction.models.backbones import X3D, ResNet3dSlowFast
from mmaction.models.backbones.x3d import SEModule
from mmaction.models.heads import SlowFastHead, X3DHead

from mutualnet_mm.models.backbones import SlimmableResNet3dSlowFast, SlimmableX3D
from mutualnet_mm.models.heads import SlimmableSlowFastHead, SlimmableX3DHead
from mutualnet_mm.ops import WidthSnapshot, make_divisible, set_width, slice_state_dict

from .equivalence import assert_matches_stock, max_difference, randomize_norms

WIDTHS = (1.0, 0.75, 0.5, 0.25)
X3D_ARGS = dict(gamma_b=2.25, gamma_d=0.2)  # X3D-M widths, one block per stage


def clip(width: float = 1.0) -> torch.Tensor:
    return torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


def slowfast_args(slow: int = 64, fast: int = 8, channel_ratio: int = 8, **slow_extra) -> dict:
    """A SlowFast-R50 with one block per stage and short temporal strides."""
    common = dict(type='resnet3d', depth=50, pretrained=None, stage_blocks=(1, 1, 1, 1),
                  conv1_stride_t=1, pool1_stride_t=1)
    return dict(resample_rate=2, speed_ratio=2, channel_ratio=channel_ratio,
                slow_pathway=dict(common, lateral=True, base_channels=slow,
                                  conv1_kernel=(1, 7, 7), inflate=(0, 0, 1, 1), **slow_extra),
                fast_pathway=dict(common, lateral=False, base_channels=fast,
                                  conv1_kernel=(5, 7, 7)))


def shapes(module: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize('channels', [24, 54, 60, 192, 432])
def test_x3d_rounding_is_the_channel_rule(channels: int) -> None:
    for multiplier in (1.0, 0.9, 0.75, 0.6, 0.5, 0.37, 0.3, 0.25, 1 / 16, 2.5):
        expected = make_divisible(channels * multiplier)
        assert X3D._round_width(channels, multiplier) == expected
        assert SEModule._round_width(channels, multiplier) == expected


def test_x3d_is_a_drop_in_at_full_width() -> None:
    model = SlimmableX3D(**X3D_ARGS)
    assert shapes(model) == shapes(X3D(**X3D_ARGS))
    assert model.stock_config(1.0) == dict(type='X3D', gamma_w=1.0, **X3D_ARGS)
    assert model.width_range == (0.25, 1.0)


@pytest.mark.parametrize('width', WIDTHS + (0.6,))
def test_x3d_matches_stock(width: float) -> None:
    torch.manual_seed(0)
    model = SlimmableX3D(**X3D_ARGS)
    randomize_norms(model)
    assert_matches_stock(model, width, clip)


def test_x3d_stock_twin_is_x3d_at_gamma_w_times_width() -> None:
    model = SlimmableX3D(gamma_w=2.5, **X3D_ARGS)  # base 64 at full width
    for width in (1.0, 0.9, 0.8, 0.75, 0.6, 0.5, 0.4, 0.33, 0.25):
        with torch.device('meta'):
            expected = shapes(X3D(gamma_w=2.5 * width, **X3D_ARGS))
        assert shapes(model.build_stock(width, device='meta')) == expected, width
    one_step = [SlimmableX3D(**X3D_ARGS).stock_config(w) for w in (0.5, 0.6, 0.7)]
    assert one_step[0] == one_step[1] == one_step[2]  # base 16: one config, one cached plan


def test_x3d_widths_move_in_three_steps_with_se_and_conv5_following() -> None:
    model = SlimmableX3D(**X3D_ARGS)
    bases = {w: model.channel_plan(w)['conv1_s.conv'] for w in (0.25, 0.37, 0.371, 0.74,
                                                                 0.741, 1.0)}
    assert bases == {0.25: 8, 0.37: 8, 0.371: 16, 0.74: 16, 0.741: 24, 1.0: 24}
    plan = model.channel_plan(0.5)  # base 16: bottlenecks 36, 72, 144, 288
    assert plan['layer4.0.conv1.conv'] == 288 and plan['conv5.conv'] == 288
    assert plan['layer4.0.se_module.fc1'] == 24  # _round_width(288, 1 / 16)
    assert plan['layer4.0.se_module.fc2'] == 288
    model.set_width(0.5)
    se = model.layer4[0].se_module
    assert (se.fc1.active_out_channels, se.fc2.active_out_channels) == (24, 288)
    assert model(clip()).shape[1] == 288


def test_slowfast_is_a_drop_in_at_full_width() -> None:
    model = SlimmableResNet3dSlowFast(**slowfast_args())
    assert shapes(model) == shapes(ResNet3dSlowFast(**slowfast_args()))
    assert model.stock_config(1.0)['channel_ratio'] == 8
    default = SlimmableResNet3dSlowFast()
    assert shapes(default) == shapes(ResNet3dSlowFast())


@pytest.mark.parametrize('width', WIDTHS)
def test_slowfast_matches_stock(width: float) -> None:
    torch.manual_seed(0)
    model = SlimmableResNet3dSlowFast(**slowfast_args())
    randomize_norms(model)
    assert_matches_stock(model, width, clip)


def test_slowfast_laterals_feed_the_slow_pathway_at_every_width() -> None:
    model = SlimmableResNet3dSlowFast(**slowfast_args())
    model.set_width(0.5)
    assert model.stock_config(0.5)['channel_ratio'] == 4  # slow 32, fast 8 base channels
    first = model.slow_path.layer2[0]
    for conv in (first.conv1.conv, first.downsample.conv):
        assert conv.in_segments == (256, 64)
        assert conv.active_in_segments == (128, 64)  # slow halves, the lateral is kept
    slow, fast = model(clip())
    assert slow.shape[1] == 1024 and fast.shape[1] == 256
    name = 'slow_path.layer2.0.conv1.conv.weight'
    full = model.state_dict()[name]
    cut = slice_state_dict(model, model.build_stock(0.5, device='meta').state_dict())[name]
    assert torch.equal(cut, torch.cat((full[:64, :128], full[:64, 256:]), dim=1))
    model.set_width(1.0)
    assert first.conv1.conv.active_in_segments == (256, 64)


def test_slowfast_training_at_a_width_touches_only_active_weights() -> None:
    model = SlimmableResNet3dSlowFast(**slowfast_args())
    model.set_width(0.5)
    slow, fast = model(clip())
    (slow.sum() + fast.sum()).backward()
    grad = model.slow_path.layer2[0].conv1.conv.weight.grad  # inputs: 256 slow + 64 lateral
    assert grad[:64, :128].abs().sum() > 0 and grad[:64, 256:].abs().sum() > 0
    assert not grad[:, 128:256].any() and not grad[64:].any()


@pytest.mark.parametrize('width', (0.75, 0.5, 0.25))
def test_slowfast_with_a_slimming_fast_pathway_matches_stock(width: float) -> None:
    torch.manual_seed(0)
    model = SlimmableResNet3dSlowFast(**slowfast_args(slow=64, fast=16, channel_ratio=4,
                                                      lateral_norm=True))
    randomize_norms(model)
    assert_matches_stock(model, width, clip)
    lateral = model.stock_config(width)['fast_pathway']['base_channels'] * 2
    assert model.slow_path.layer1[0].conv1.conv.active_in_segments[1] == lateral


def test_slowfast_rejects_what_no_stock_network_expresses() -> None:
    model = SlimmableResNet3dSlowFast(**slowfast_args(slow=64, fast=16, channel_ratio=4))
    with pytest.raises(ValueError, match='slow pathway has 40 base channels, the fast one 16'):
        model.set_width(0.65)
    with pytest.raises(ValueError, match='channel_ratio'):
        SlimmableResNet3dSlowFast(**slowfast_args(slow=64, fast=16, channel_ratio=8))
    with pytest.raises(ValueError, match='lateral_inv'):
        SlimmableResNet3dSlowFast(**slowfast_args(lateral_inv=True))


def test_concat_conv_slices_need_the_width_first() -> None:
    model = SlimmableResNet3dSlowFast(**slowfast_args())
    stock = model.build_stock(0.5, device='meta')
    with pytest.raises(ValueError, match='set the width first'):
        slice_state_dict(model, stock.state_dict())
    with pytest.raises(ValueError, match='accepts exactly 320'):
        model.slow_path.layer2[0].conv1.conv(torch.zeros(1, 200, 1, 1, 1))


@pytest.mark.parametrize('width', (1.0, 0.5, 0.25))
def test_heads_take_slimmed_features(width: float) -> None:
    torch.manual_seed(0)
    cases = ((SlimmableX3D(**X3D_ARGS), SlimmableX3DHead, X3DHead, 432),
             (SlimmableResNet3dSlowFast(**slowfast_args()), SlimmableSlowFastHead,
              SlowFastHead, 2304))
    for backbone, head_cls, stock_cls, in_channels in cases:
        backbone.set_width(width)
        head = head_cls(num_classes=5, in_channels=in_channels).eval()
        with torch.no_grad():
            feats = backbone(clip())
        active = sum(f.shape[1] for f in feats) if isinstance(feats, tuple) else feats.shape[1]
        stock = stock_cls(num_classes=5, in_channels=active).eval()
        stock.load_state_dict(slice_state_dict(head, stock.state_dict()))
        with torch.no_grad():
            scores = head(feats)
            assert scores.shape == (1, 5)
            assert max_difference(scores, stock(feats)) <= 1e-5


def test_slowfast_width_snapshot_restores_the_lateral_segments() -> None:
    model = SlimmableResNet3dSlowFast(**slowfast_args()).eval()
    narrow = WidthSnapshot(model, 0.5)
    with torch.no_grad():
        expected = [t.clone() for t in model(clip(1.0))]
        set_width(model, 1.0)
        narrow.restore()
        assert all(torch.equal(a, b) for a, b in zip(model(clip(1.0)), expected))
