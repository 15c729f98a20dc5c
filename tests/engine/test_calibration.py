"""Post-statistics BN calibration: cumulative batch statistics at one configuration."""
from pathlib import Path
from typing import List

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope

from mutualnet_mm import get_width, set_width
from mutualnet_mm.deploy.adaptive import config_scope
from mutualnet_mm.engine import DetBatchRescaler, SubnetConfig, calibrate_bn
from mutualnet_mm.engine.calibration import deterministic_dataset, deterministic_pipeline, is_random
from mutualnet_mm.models.backbones.resnet import SlimmableResNet
from mutualnet_mm.ops import SlimmableBatchNorm2d

BASE = 16
CONFIG = SubnetConfig(width=0.5, scale=0.5)
ACTIVE = 8  # scale_channels(16, 0.5): the stem's active channels at CONFIG


class TinyNet(BaseModel):
    """A slimmable ResNet-18 (base 16), optionally with a batch norm after it."""

    def __init__(self, with_head: bool) -> None:
        super().__init__(data_preprocessor=dict(type='BaseDataPreprocessor'))
        self.backbone = SlimmableResNet(depth=18, base_channels=BASE, stem_channels=BASE,
                                        frozen_stages=-1, norm_eval=False, out_indices=(3,))
        self.head = SlimmableBatchNorm2d(BASE * 8) if with_head else None

    def extract_feat(self, inputs: torch.Tensor) -> tuple:
        return self.backbone(inputs)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        features = self.extract_feat(inputs)[-1]
        return features if self.head is None else self.head(features)


def batches(count: int) -> List[dict]:
    generator = torch.Generator().manual_seed(0)
    return [dict(inputs=torch.rand(2, 3, 32, 32, generator=generator) * 4 + i,
                 data_samples=None) for i in range(count)]


def tiny_net(with_head: bool = False) -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet(with_head)
    # Statistics as training leaves them, so that a reset is visible.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.fill_(5.0)
            module.running_var.fill_(3.0)
    return model


@pytest.mark.parametrize('with_head', [False, True], ids=['features', 'whole_model'])
def test_statistics_are_the_average_of_the_batch_statistics(with_head: bool) -> None:
    model = tiny_net(with_head)
    data = batches(4)
    used = calibrate_bn(model, data, CONFIG, DetBatchRescaler(), num_batches=3)
    assert used == 3

    # By hand: the stem's batch norm sees the stem conv's active outputs on the
    # rescaled batches (16 x 16, zero-padded to the divisor 32 as in training); its
    # statistics are the mean over the 3 batches of the batch mean and of the unbiased
    # batch variance.
    conv = model.backbone.conv1
    means, variances = [], []
    for batch in data[:3]:
        inputs = F.interpolate(batch['inputs'], size=(16, 16), mode='bilinear',
                               align_corners=False)
        inputs = F.pad(inputs, (0, 16, 0, 16))
        out = F.conv2d(inputs, conv.weight[:ACTIVE], stride=2, padding=3)
        means.append(out.mean(dim=(0, 2, 3)))
        variances.append(out.var(dim=(0, 2, 3), unbiased=True))
    norm = model.backbone.bn1
    torch.testing.assert_close(norm.running_mean[:ACTIVE], torch.stack(means).mean(0))
    torch.testing.assert_close(norm.running_var[:ACTIVE], torch.stack(variances).mean(0))
    # Only the active prefix is written; the rest keeps the reset values.
    assert torch.equal(norm.running_mean[ACTIVE:], torch.zeros(BASE - ACTIVE))
    assert torch.equal(norm.running_var[ACTIVE:], torch.ones(BASE - ACTIVE))
    assert norm.num_batches_tracked == 3
    if with_head:  # reached through the whole model, not only the features
        assert model.head.num_batches_tracked == 3
        assert torch.equal(model.head.running_mean[BASE * 4:], torch.zeros(BASE * 4))
        assert not torch.equal(model.head.running_mean[:BASE * 4], torch.zeros(BASE * 4))

    assert not any(module.training for module in model.modules())
    assert get_width(model) == CONFIG.width


def test_statistics_do_not_depend_on_what_ran_before() -> None:
    first, second = tiny_net(), tiny_net()
    set_width(second, 1.0)
    second.train()
    second(torch.rand(2, 3, 32, 32) * 10)  # training moves the running statistics
    for model in (first, second):
        calibrate_bn(model, batches(2), CONFIG, DetBatchRescaler(), num_batches=2)
    for a, b in zip(first.buffers(), second.buffers()):
        torch.testing.assert_close(a, b)


def test_zero_batches_keep_the_statistics() -> None:
    model = tiny_net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert calibrate_bn(model, batches(2), CONFIG, DetBatchRescaler(), num_batches=0) == 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not any(module.training for module in model.modules())
    assert get_width(model) == CONFIG.width


def test_an_empty_loader_is_an_error() -> None:
    with pytest.raises(ValueError, match='BN calibration got no batches'):
        calibrate_bn(tiny_net(), [], CONFIG, DetBatchRescaler(), num_batches=4)


CONFIGS = Path(__file__).parents[2] / 'configs'
ALL_CONFIGS = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob('*.py')
                     if '_base_' not in p.parts)


def pipelines(dataset_cfg) -> List[list]:
    """Every pipeline of a dataset config, wrapped datasets included."""
    found = [dataset_cfg['pipeline']] if dataset_cfg.get('pipeline') else []
    if 'dataset' in dataset_cfg:
        found += pipelines(dataset_cfg['dataset'])
    for inner in dataset_cfg.get('datasets') or []:
        found += pipelines(inner)
    return found


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_no_random_step_is_left_in_any_calibration_pipeline(name: str) -> None:
    cfg = Config.fromfile(str(CONFIGS / name))
    train = pipelines(cfg.train_dataloader.dataset)
    calibration = pipelines(deterministic_dataset(cfg.train_dataloader.dataset))
    assert train and len(calibration) == len(train)
    assert any(is_random(step) for pipeline in train for step in pipeline)
    for pipeline in calibration:
        assert not [step['type'] for step in pipeline if is_random(step)]
        with DefaultScope.overwrite_default_scope(config_scope(cfg)):
            Compose(pipeline)  # every step builds in the config's scope


@pytest.mark.parametrize('step', [
    dict(type='RandomFlip', prob=0.5), dict(type='mmdet.RandomFlip'), dict(type='Flip'),
    dict(type='RandomResizedCrop', scale=224), dict(type='RandomResizedCrop'),
    dict(type='Lighting', eigval=[1.0], eigvec=[[1.0]]), dict(type='ColorJitter'),
    dict(type='RandomErasing'), dict(type='RandomChoiceResize', scales=[(8, 8)]),
    dict(type='RandomResize', scale=(8, 8)), dict(type='RandomCrop', crop_size=8),
    dict(type='MultiScaleCrop'), dict(type='PhotoMetricDistortion'),
    dict(type='SampleFrames', clip_len=8), dict(type='SampleFrames', test_mode=False),
    dict(type='SampleFrames', test_mode=True, temporal_jitter=True),
    dict(type='UniformSample', clip_len=8), dict(type='RandAugment'),
    dict(type='KeyMapper', transforms=[dict(type='RandomFlip')]),
], ids=lambda step: step['type'])
def test_random_steps(step: dict) -> None:
    assert is_random(step)


@pytest.mark.parametrize('step', [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(8, 8)),
    dict(type='ResizeEdge', scale=256, edge='short'), dict(type='CenterCrop', crop_size=224),
    dict(type='SampleFrames', clip_len=8, test_mode=True), dict(type='PackInputs'),
    dict(type='KeyMapper', transforms=[dict(type='Resize', scale=(8, 8))]),
], ids=lambda step: step['type'])
def test_deterministic_steps(step: dict) -> None:
    assert not is_random(step)


def test_random_crops_and_wrappers_in_calibration() -> None:
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='RandomResizedCrop', scale=(64, 96), backend='pillow'),
                dict(type='mmpretrain.RandomResizedCrop', scale=224),
                dict(type='KeyMapper', transforms=[dict(type='RandomFlip'),
                                                   dict(type='Resize', scale=(8, 8))]),
                dict(type='DenseSampleFrames', clip_len=8),
                dict(type='UniformSample', clip_len=8)]
    assert deterministic_pipeline(pipeline) == [
        dict(type='LoadImageFromFile'),
        # mmpretrain's (h, w) crop; CenterCrop takes (w, h)
        dict(type='ResizeEdge', scale=109, edge='short', backend='pillow'),
        dict(type='CenterCrop', crop_size=(96, 64)),
        dict(type='mmpretrain.ResizeEdge', scale=256, edge='short'),
        dict(type='mmpretrain.CenterCrop', crop_size=224),
        dict(type='KeyMapper', transforms=[dict(type='Resize', scale=(8, 8))]),
        dict(type='DenseSampleFrames', clip_len=8, test_mode=True, temporal_jitter=False),
        dict(type='UniformSample', clip_len=8, test_mode=True)]
