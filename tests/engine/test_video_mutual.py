"""Mutual learning on a real X3D recognizer: logit distillation and 5-D BN calibration."""
from pathlib import Path
from typing import List

import pytest
import torch
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

import mutualnet_mm
from mutualnet_mm.datasets.motion_clips import generate_motion_clips
from mutualnet_mm.engine import (
    LogitDistiller,
    MutualTrainStep,
    SubnetConfig,
    VideoBatchRescaler,
    calibrate_bn,
)

CONFIG = Path(__file__).parents[2] / 'configs/demo/x3d_mutual_demo.py'


@pytest.fixture(scope='module')
def cfg(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp('motion_clips')
    generate_motion_clips(root, num_train=6, num_val=2, size=32, frames=16)
    cfg = Config.fromfile(str(CONFIG))
    cfg.train_cfg.mutual.full_only_fraction = 0.0  # the cohort from iteration 0 (no warm-up)
    for key in ('train_dataloader', 'val_dataloader'):
        loader = cfg[key]
        loader.update(batch_size=3, num_workers=0, persistent_workers=False)
        loader.dataset.data_prefix = dict(video=str(root))
        split = 'train' if key == 'train_dataloader' else 'val'
        loader.dataset.ann_file = str(root / f'{split}_list.txt')
    return cfg


@pytest.fixture(scope='module')
def batches(cfg: Config) -> List[dict]:
    with DefaultScope.overwrite_default_scope('mmaction'):
        return list(Runner.build_dataloader(cfg.train_dataloader, seed=0))


@pytest.fixture
def model(cfg: Config) -> torch.nn.Module:
    init_default_scope('mmaction')
    torch.manual_seed(0)
    return MODELS.build(cfg.model).train()


def test_logit_distiller_is_the_kl_divergence() -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 6, generator=generator), torch.randn(4, 6,
                                                                           generator=generator)
    p_teacher = teacher.softmax(-1)
    expected = (p_teacher * (p_teacher.log() - student.log_softmax(-1))).sum() / 4
    torch.testing.assert_close(LogitDistiller().loss(student, teacher), expected)
    # Temperature softens both sides and scales the loss by its square.
    soft = LogitDistiller(temperature=2.0).loss(student, teacher)
    p_soft = (teacher / 2).softmax(-1)
    expected_soft = 4 * (p_soft * (p_soft.log() - (student / 2).log_softmax(-1))).sum() / 4
    torch.testing.assert_close(soft, expected_soft)
    with pytest.raises(ValueError, match='temperature must be positive'):
        LogitDistiller(temperature=0)


def test_recognizer_step_distills_every_subnetwork(cfg: Config, batches: List[dict],
                                                   model: torch.nn.Module) -> None:
    step = MutualTrainStep.from_config(cfg.train_cfg.mutual, model, seed=0)
    assert isinstance(step.distiller, LogitDistiller) and not step.distiller.label_loss
    cohort = step.sampler.cohort(0)
    inputs_seen, logits_seen = [], []
    model.backbone.register_forward_pre_hook(
        lambda m, args: inputs_seen.append((tuple(args[0].shape), mutualnet_mm.get_width(m))))
    model.cls_head.register_forward_hook(lambda m, args, out: logits_seen.append(out.detach()))
    label_losses = []
    model.cls_head.loss_cls.register_forward_hook(lambda *_: label_losses.append(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = []
    original_step = optimizer.step
    optimizer.step = lambda *a, **k: steps.append(1) or original_step(*a, **k)
    log_vars = step(model, batches[0], OptimWrapper(optimizer), 0)

    assert len(steps) == 1
    assert len(inputs_seen) == len(cohort) == 4
    assert len(label_losses) == 1  # the full network's: sub-networks compute none
    for (shape, width), config in zip(inputs_seen, cohort):
        assert width == pytest.approx(config.width)
        assert shape[-1] == round(32 * config.scale)  # (N*views, C, T, H, W)
        assert len(shape) == 5
    # Sub-networks learn from the full network only: their loss is the KL to its logits.
    teacher = logits_seen[0]
    kls = [LogitDistiller().loss(s, teacher) for s in logits_seen[1:]]
    torch.testing.assert_close(log_vars['loss_distill'], torch.stack(kls).mean())
    torch.testing.assert_close(log_vars['loss_min'], kls[-1])
    torch.testing.assert_close([log_vars['loss_mid1'], log_vars['loss_mid2']], kls[:-1])
    assert {'loss_cls', 'top1_acc', 'loss_full'} <= set(log_vars)


def test_calibration_of_5d_batches(cfg: Config, batches: List[dict],
                                   model: torch.nn.Module) -> None:
    config = SubnetConfig(0.25, 0.75)
    norm = next(m for m in model.backbone.modules() if isinstance(m, _BatchNorm))
    batch_inputs = []
    norm.register_forward_pre_hook(lambda m, args: batch_inputs.append(args[0].detach()))
    used = calibrate_bn(model, batches, config, VideoBatchRescaler(), num_batches=2)

    assert used == 2 and not model.training
    assert mutualnet_mm.get_width(model) == 0.25
    assert all(x.dim() == 5 for x in batch_inputs)
    channels = batch_inputs[0].shape[1]
    assert channels < norm.num_features
    # Cumulative average of the per-batch statistics over (N, T, H, W), active channels only.
    means = [x.mean(dim=(0, 2, 3, 4)) for x in batch_inputs]
    variances = [x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in batch_inputs]
    torch.testing.assert_close(norm.running_mean[:channels], torch.stack(means).mean(0))
    torch.testing.assert_close(norm.running_var[:channels], torch.stack(variances).mean(0))
    assert torch.equal(norm.running_mean[channels:], torch.zeros(norm.num_features - channels))
    assert torch.equal(norm.running_var[channels:], torch.ones(norm.num_features - channels))
    # Evaluation then normalizes with exactly these statistics.
    x = batch_inputs[0]
    expected = F.batch_norm(x, norm.running_mean[:channels], norm.running_var[:channels],
                            norm.weight[:channels], norm.bias[:channels], False, 0.0, norm.eps)
    torch.testing.assert_close(norm(x), expected)
