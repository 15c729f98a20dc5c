"""Slimmable layers against torch's functional ops on sliced weights."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import nn

from mutualnet_mm.ops import (
    SlimmableBatchNorm2d,
    SlimmableBatchNorm3d,
    SlimmableConv2d,
    SlimmableConv3d,
    SlimmableLinear,
    SlimmableSyncBatchNorm,
    convert_to_slimmable,
    layers,
    reset_bn_statistics,
)
from mutualnet_mm.ops.layers import sliced_weights


@pytest.fixture(autouse=True)
def seed() -> None:
    torch.manual_seed(0)


def randomized_bn(layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        n = layer.num_features
        layer.running_mean.copy_(torch.randn(n))
        layer.running_var.copy_(torch.rand(n) + 0.5)
        layer.weight.copy_(torch.rand(n) + 0.5)
        layer.bias.copy_(torch.randn(n))
    return layer


def test_conv2d_slices_inputs_and_outputs() -> None:
    conv = SlimmableConv2d(16, 32, 3, stride=2, padding=1, bias=True)
    x = torch.randn(2, 8, 9, 9)
    conv.set_active_out_channels(24)
    expected = F.conv2d(x, conv.weight[:24, :8], conv.bias[:24], stride=2, padding=1)
    assert torch.equal(conv(x), expected)


def test_conv2d_at_full_width_is_the_stock_conv() -> None:
    conv = SlimmableConv2d(16, 32, 3, padding=1)
    stock = nn.Conv2d(16, 32, 3, padding=1)
    stock.load_state_dict(conv.state_dict())
    x = torch.randn(1, 16, 6, 6)
    assert torch.equal(conv(x), stock(x))
    conv.set_active_out_channels(32)
    assert torch.equal(conv(x), stock(x))


def test_grouped_conv_keeps_groups_and_slices_per_group() -> None:
    conv = SlimmableConv2d(16, 32, 3, padding=1, groups=2)
    conv.set_active_out_channels(24)
    x = torch.randn(1, 8, 5, 5)
    expected = F.conv2d(x, conv.weight[:24, :4], conv.bias[:24], padding=1, groups=2)
    assert torch.equal(conv(x), expected)
    with pytest.raises(ValueError, match='2 groups got 7 input channels'):
        conv(torch.randn(1, 7, 5, 5))


def test_conv_with_reflect_padding() -> None:
    conv = SlimmableConv2d(8, 8, 3, padding=1, padding_mode='reflect')
    conv.set_active_out_channels(4)
    x = torch.randn(1, 6, 5, 5)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'), conv.weight[:4, :6],
                        conv.bias[:4])
    assert torch.equal(conv(x), expected)


@pytest.mark.parametrize('multiplier', [1, 2])
def test_depthwise_groups_follow_input(multiplier: int) -> None:
    conv = SlimmableConv2d(16, 16 * multiplier, 3, padding=1, groups=16, bias=False)
    conv.set_active_out_channels(4)  # ignored: a depthwise conv follows its input
    x = torch.randn(1, 8, 5, 5)
    expected = F.conv2d(x, conv.weight[:8 * multiplier], padding=1, groups=8)
    out = conv(x)
    assert out.shape[1] == 8 * multiplier
    assert torch.equal(out, expected)


def test_conv3d_slices() -> None:
    conv = SlimmableConv3d(8, 16, (1, 3, 3), padding=(0, 1, 1))
    conv.set_active_out_channels(8)
    x = torch.randn(1, 4, 2, 5, 5)
    expected = F.conv3d(x, conv.weight[:8, :4], conv.bias[:8], padding=(0, 1, 1))
    assert torch.equal(conv(x), expected)


def test_linear_slices() -> None:
    linear = SlimmableLinear(16, 10)
    x = torch.randn(2, 3, 12)
    linear.set_active_out_channels(6)
    assert torch.equal(linear(x), F.linear(x, linear.weight[:6, :12], linear.bias[:6]))
    linear.set_active_out_channels(None)
    assert linear(x).shape == (2, 3, 10)


def test_slim_in_false_rejects_fewer_channels() -> None:
    conv = SlimmableConv2d(3, 8, 3)
    conv.slim_in = False
    with pytest.raises(ValueError, match='got an input with 2 channels; it accepts exactly 3'):
        conv(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match='accepts at most 8'):
        SlimmableLinear(8, 4)(torch.randn(1, 9))


def test_set_active_out_channels_range() -> None:
    conv = SlimmableConv2d(8, 16, 1)
    for bad in (0, 17):
        with pytest.raises(ValueError, match=f'has 16 output channels; cannot run {bad}'):
            conv.set_active_out_channels(bad)
    conv.slim_out = False
    with pytest.raises(ValueError, match='slim_out=False'):
        conv.set_active_out_channels(8)
    conv.set_active_out_channels(16)  # the full count is always allowed
    assert conv(torch.randn(1, 8, 2, 2)).shape[1] == 16


@pytest.mark.parametrize('bn_cls, shape', [(SlimmableBatchNorm2d, (2, 6, 4, 4)),
                                           (SlimmableBatchNorm3d, (2, 6, 2, 3, 3)),
                                           (SlimmableSyncBatchNorm, (2, 6, 4, 4))])
def test_bn_eval_uses_first_running_stats(bn_cls, shape) -> None:
    bn = randomized_bn(bn_cls(16)).eval()
    x = torch.randn(shape)
    expected = F.batch_norm(x, bn.running_mean[:6], bn.running_var[:6], bn.weight[:6],
                            bn.bias[:6], False, 0.0, bn.eps)
    assert torch.allclose(bn(x), expected, atol=1e-6)


@pytest.mark.parametrize('bn_cls', [SlimmableBatchNorm2d, SlimmableSyncBatchNorm])
def test_bn_train_updates_only_first_running_stats(bn_cls) -> None:
    bn = randomized_bn(bn_cls(16, momentum=0.1)).train()
    mean_before, var_before = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(4, 6, 5, 5)
    out = bn(x)
    batch_mean = x.mean((0, 2, 3))
    batch_var = x.var((0, 2, 3), unbiased=True)
    assert torch.allclose(out, F.batch_norm(x, None, None, bn.weight[:6], bn.bias[:6], True,
                                            0.0, bn.eps), atol=1e-5)
    assert torch.allclose(bn.running_mean[:6], 0.9 * mean_before[:6] + 0.1 * batch_mean,
                          atol=1e-6)
    assert torch.allclose(bn.running_var[:6], 0.9 * var_before[:6] + 0.1 * batch_var,
                          atol=1e-6)
    assert torch.equal(bn.running_mean[6:], mean_before[6:])
    assert torch.equal(bn.running_var[6:], var_before[6:])
    assert bn.num_batches_tracked.item() == 1


def test_bn_cumulative_momentum_averages_batches() -> None:
    bn = SlimmableBatchNorm2d(16, momentum=None).train()
    batches = [torch.randn(2, 8, 3, 3) + shift for shift in (0.0, 1.0, 3.0)]
    for x in batches:
        bn(x)
    expected = torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0)
    assert bn.num_batches_tracked.item() == 3
    assert torch.allclose(bn.running_mean[:8], expected, atol=1e-6)
    assert torch.equal(bn.running_mean[8:], torch.zeros(8))


def test_bn_at_full_width_is_the_stock_bn() -> None:
    bn = randomized_bn(SlimmableBatchNorm2d(8))
    stock = nn.BatchNorm2d(8)
    stock.load_state_dict(bn.state_dict())
    x = torch.randn(2, 8, 3, 3)
    for training in (False, True):
        assert torch.equal(bn.train(training)(x), stock.train(training)(x))
    assert torch.equal(bn.running_mean, stock.running_mean)


def test_bn_rejects_more_channels_than_it_has() -> None:
    with pytest.raises(ValueError, match='16 channels; it accepts at most 8'):
        SlimmableBatchNorm2d(8)(torch.randn(2, 16, 2, 2))


def test_convert_to_slimmable_keeps_names_and_shares_parameters() -> None:
    model = nn.Sequential(
        ConvModule(3, 8, 3, padding=1, norm_cfg=dict(type='BN')),
        nn.Conv3d(8, 8, 1), nn.BatchNorm3d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4),
        nn.SyncBatchNorm(4))
    before = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    names = [name for name, _ in model.named_modules()]
    assert convert_to_slimmable(model) is model
    assert [name for name, _ in model.named_modules()] == names
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    assert all(b is buffers[k] for k, b in model.named_buffers())
    assert isinstance(model[0].conv, SlimmableConv2d)
    assert isinstance(model[0].bn, SlimmableBatchNorm2d)
    assert isinstance(model[1], SlimmableConv3d)
    assert isinstance(model[2], SlimmableBatchNorm3d)
    assert isinstance(model[5], SlimmableLinear)
    assert isinstance(model[6], SlimmableSyncBatchNorm)
    assert type(model[3]) is nn.ReLU
    assert convert_to_slimmable(model[5]) is model[5]  # already slimmable


def test_convert_to_slimmable_keeps_outputs() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 1)).eval()
    randomized_bn(model[1])
    x = torch.randn(1, 3, 6, 6)
    expected = model(x)
    assert torch.equal(convert_to_slimmable(model)(x), expected)
    twin = convert_to_slimmable(nn.Conv2d(3, 4, 1))
    assert isinstance(twin, SlimmableConv2d)


def test_reset_bn_statistics() -> None:
    model = nn.Sequential(randomized_bn(SlimmableBatchNorm2d(8)), nn.Conv2d(8, 8, 1),
                          randomized_bn(nn.BatchNorm2d(8)),
                          nn.BatchNorm2d(8, track_running_stats=False))
    model(torch.randn(2, 8, 2, 2))
    assert reset_bn_statistics(model) == 2
    for bn in (model[0], model[2]):
        assert torch.equal(bn.running_mean, torch.zeros(8))
        assert torch.equal(bn.running_var, torch.ones(8))
        assert bn.num_batches_tracked.item() == 0
        assert bn.momentum is None
    model[0].momentum = 0.1
    assert reset_bn_statistics(model, cumulative=False) == 2
    assert model[0].momentum == 0.1


def test_full_width_runs_on_the_weights_as_they_are() -> None:
    # no per-call slicing at full width (adaptive inference runs at native speed)
    conv = SlimmableConv2d(8, 16, 3)
    weight, bias, groups = sliced_weights(torch.zeros(1, 8, 3, 3), conv.weight, conv.bias, 16,
                                          1, False, True, 'conv')
    assert weight is conv.weight and bias is conv.bias and groups == 1
    weight, bias, _ = sliced_weights(torch.zeros(1, 4, 3, 3), conv.weight, conv.bias, 8, 1,
                                     False, True, 'conv')
    assert weight.shape == (8, 4, 3, 3) and bias.shape == (8,)


def test_evaluation_reuses_kept_slices_until_the_weight_changes() -> None:
    linear = SlimmableLinear(6, 5)
    linear.set_active_out_channels(3)
    x = torch.randn(2, 4)
    with torch.no_grad():
        linear(x)
        kept = list(linear._kept_slices.values())[0][2][0]
        assert kept.is_contiguous() and torch.equal(kept, linear.weight[:3, :4])
        linear(x)
        assert list(linear._kept_slices.values())[0][2][0] is kept
        linear.weight.mul_(2)  # in place: a new version of the weight
        assert torch.equal(linear(x), F.linear(x, linear.weight[:3, :4], linear.bias[:3]))
        linear.load_state_dict({'weight': torch.randn(5, 6), 'bias': torch.randn(5)})
        assert torch.equal(linear(x), F.linear(x, linear.weight[:3, :4], linear.bias[:3]))
        linear.bias = nn.Parameter(torch.randn(5))  # reassigned
        assert torch.equal(linear(x), F.linear(x, linear.weight[:3, :4], linear.bias[:3]))
        linear.double()
        assert linear(x.double()).dtype == torch.float64


def test_kept_views_cost_no_copy_and_follow_their_weights() -> None:
    conv = SlimmableConv2d(8, 6, 1)
    conv.set_active_out_channels(3)
    x = torch.randn(1, 8, 2, 2)  # all inputs: the weight's prefix of outputs is a view
    with torch.no_grad():
        conv(x)
        weight, bias, _ = list(conv._kept_slices.values())[0][2]
        assert weight._base is conv.weight and bias._base is conv.bias
        conv.weight.mul_(-3.0)
        conv.bias.add_(1.0)
        assert torch.equal(conv(x), F.conv2d(x, conv.weight[:3], conv.bias[:3]))
        assert list(conv._kept_slices.values())[0][2][0] is weight  # still the same view


def test_evaluation_norm_follows_its_running_statistics() -> None:
    norm = randomized_bn(SlimmableBatchNorm2d(8)).eval()
    x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        norm(x)
        norm.running_mean.add_(1.0)  # as load_bn_state and calibration change them
        expected = F.batch_norm(x, norm.running_mean[:4], norm.running_var[:4],
                                norm.weight[:4], norm.bias[:4], False, 0.0, norm.eps)
        assert torch.equal(norm(x), expected)
        with pytest.raises(ValueError, match='expected a 4D input'):
            norm(x[0])


def test_training_slices_a_view_so_gradients_reach_the_weight() -> None:
    conv = SlimmableConv2d(8, 8, 3)
    conv.set_active_out_channels(4)
    weight = conv.sliced_parameters(torch.randn(1, 4, 5, 5))[0]
    assert weight._base is conv.weight and weight.requires_grad


def test_slices_kept_per_layer_are_bounded() -> None:
    conv = SlimmableConv2d(16, 16, 1)
    with torch.no_grad():
        for channels in range(2, 2 + 2 * layers.SLICES_PER_LAYER):
            conv.set_active_out_channels(channels)
            assert conv(torch.randn(1, channels, 2, 2)).shape[1] == channels
    assert len(conv._kept_slices) == layers.SLICES_PER_LAYER
    kept = [value[2][0] for value in conv._kept_slices.values()]
    assert [w.shape[:2] for w in kept] == [(c, c) for c in range(6, 10)]  # the latest four


def test_kept_slices_are_not_copied_or_pickled() -> None:
    conv = SlimmableConv2d(8, 8, 3, bias=False)
    conv.set_active_out_channels(4)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        expected = conv(x)
        for twin in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
            assert twin._kept_slices is None  # the copy keeps none of the original's
            assert torch.equal(twin(x), expected)
            twin.weight.mul_(0)  # the copy's own weights, not the original's slices
            assert not twin(x).any() and torch.equal(conv(x), expected)
