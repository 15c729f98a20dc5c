"""Classification joins through the shared seams: its rescaler, the step, the distiller."""
from typing import List

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mutualnet_mm
from mutualnet_mm.engine import ClsBatchRescaler, LogitDistiller, MutualTrainStep, SubnetConfig
from mutualnet_mm.engine.rescale import default_rescaler

MUTUAL = dict(num_subnets=4, scales=(1.0, 192 / 224, 160 / 224, 128 / 224),
              distill=dict(type='LogitDistiller', module='head'))


def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=5,
                                   mean=[128.0] * 3, std=[64.0] * 3),
            backbone=dict(type='SlimmableResNet', depth=18, base_channels=16,
                          stem_channels=16),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='SlimmableLinearClsHead', num_classes=5, in_channels=128)))


def batch(size: int = 56) -> dict:
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
              for _ in range(4)]
    return dict(inputs=images, data_samples=[DataSample().set_gt_label(i) for i in range(4)])


def test_cls_rescaler_downsamples_the_same_crop() -> None:
    inputs = torch.randn(2, 3, 224, 224)
    samples = [DataSample().set_gt_label(1)]
    for size in (192, 160, 128):
        out, out_samples = ClsBatchRescaler()(inputs, samples, SubnetConfig(1.0, size / 224))
        assert out.shape == (2, 3, size, size) and out_samples is samples
        expected = F.interpolate(inputs, size=(size, size), mode='bilinear',
                                 align_corners=False)
        torch.testing.assert_close(out, expected)
    assert ClsBatchRescaler()(inputs, samples, SubnetConfig(1.0, 1.0))[0] is inputs
    corners, _ = ClsBatchRescaler(align_corners=True)(inputs, samples, SubnetConfig(1.0, 0.5))
    torch.testing.assert_close(corners[..., 0, 0], inputs[..., 0, 0])  # the reference's
    with pytest.raises(ValueError, match=r'expects inputs of shape \(N, C, H, W\), got'):
        ClsBatchRescaler()(torch.zeros(1, 1, 3, 8, 8), [], SubnetConfig(1.0, 0.5))


def test_default_rescaler_follows_the_data_preprocessor() -> None:
    assert default_rescaler(classifier()) == dict(type='ClsBatchRescaler')
    with DefaultScope.overwrite_default_scope('mmdet'):
        from mmdet.registry import MODELS as DET_MODELS
        det_pre = DET_MODELS.build(dict(type='DetDataPreprocessor'))
    with DefaultScope.overwrite_default_scope('mmaction'):
        from mmaction.registry import MODELS as ACTION_MODELS
        video_pre = ACTION_MODELS.build(dict(type='ActionDataPreprocessor'))

    class Task(BaseModel):
        def forward(self, *args, **kwargs):
            return None

    for preprocessor, expected in ((det_pre, 'DetBatchRescaler'),
                                   (video_pre, 'VideoBatchRescaler')):
        assert default_rescaler(Task(data_preprocessor=preprocessor)) == dict(type=expected)
    with pytest.raises(ValueError, match='no task is registered for the data '
                                         'preprocessor BaseDataPreprocessor'):
        default_rescaler(Task(data_preprocessor=BaseDataPreprocessor()))


def test_classifier_step_full_on_labels_subnetworks_on_the_kl() -> None:
    model = classifier().train()
    step = MutualTrainStep.from_config(MUTUAL, model, seed=0)
    assert isinstance(step.rescaler, ClsBatchRescaler)  # from the preprocessor, not a name
    assert isinstance(step.distiller, LogitDistiller) and not step.distiller.label_loss
    cohort = step.sampler.cohort(0)
    seen: List[tuple] = []
    logits: List[torch.Tensor] = []
    model.backbone.register_forward_pre_hook(
        lambda m, args: seen.append((args[0].shape[-1], mutualnet_mm.get_width(m))))
    model.head.register_forward_hook(lambda m, args, out: logits.append(out.detach()))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    log_vars = step(model, batch(), optim, 0)
    assert seen == [(round(56 * c.scale), c.width) for c in cohort]
    assert [c.width for c in cohort] == sorted((c.width for c in cohort), reverse=True)
    assert cohort[0] == SubnetConfig(1.0, 1.0) and cohort[-1].width == 0.25
    labels = torch.arange(4)
    torch.testing.assert_close(log_vars['loss_full'], F.cross_entropy(logits[0], labels))
    kls = [F.kl_div(s.log_softmax(-1), logits[0].softmax(-1), reduction='batchmean')
           for s in logits[1:]]
    torch.testing.assert_close(log_vars['loss_distill'], torch.stack(kls).mean())
    torch.testing.assert_close(log_vars['loss_min'], kls[-1])  # no label loss
    torch.testing.assert_close(log_vars['loss'], log_vars['loss_full'] + sum(kls))


@pytest.mark.parametrize('label_loss', [False, True], ids=['kl_only', 'with_labels'])
def test_subnetworks_without_label_loss_do_not_compute_it(label_loss: bool) -> None:
    """The label loss is computed once per iteration (the full pass) unless kept."""
    model = classifier().train()
    distill = dict(MUTUAL['distill'], label_loss=label_loss)
    step = MutualTrainStep.from_config(dict(MUTUAL, distill=distill), model, seed=0)
    calls: List[int] = []
    model.head.loss_module.register_forward_hook(lambda m, args, out: calls.append(1))
    logits: List[torch.Tensor] = []
    model.head.register_forward_hook(lambda m, args, out: logits.append(out.detach()))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    log_vars = step(model, batch(), optim, 0)
    assert len(calls) == (4 if label_loss else 1) and len(logits) == 4
    assert 'loss' not in vars(model.head)  # the head's own loss method is back
    labels = torch.arange(4)
    kls = [F.kl_div(s.log_softmax(-1), logits[0].softmax(-1), reduction='batchmean')
           for s in logits[1:]]
    label_losses = [F.cross_entropy(s, labels) for s in logits[1:]] if label_loss else [0] * 3
    torch.testing.assert_close(log_vars['loss_min'], kls[-1] + label_losses[-1])
    torch.testing.assert_close(log_vars['loss'], F.cross_entropy(logits[0], labels) +
                               sum(k + c for k, c in zip(kls, label_losses)))
    # The next pass of the model computes its label loss again.
    model(model.data_preprocessor(batch(), True)['inputs'], batch()['data_samples'],
          mode='loss')
    assert len(calls) == (5 if label_loss else 2)
