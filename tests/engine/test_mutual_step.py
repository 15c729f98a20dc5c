"""One mutual-learning iteration on a tiny Mask R-CNN: passes, gradients, one optimizer step."""
import copy
import math
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterator, List

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mutualnet_mm
from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.engine import (
    CohortSampler,
    DetBatchRescaler,
    MutualTrainStep,
    NonFiniteLossError,
    loops,
)
from mutualnet_mm.engine.eta import time_cohort_passes
from mutualnet_mm.engine.mutual_step import check_trainable_norms, pass_names

CONFIG = Path(__file__).parents[2] / 'configs/demo/maskrcnn_mutual_r18_shapes.py'
SIZE = 64
SCALES = (1.0, 0.75, 0.5)
STOCK_LOSSES = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox', 'loss_mask'}
# Parameters of every trained part (the config freezes the stem and layer1).
WATCHED = ('backbone.layer2.0.conv1.weight', 'backbone.layer3.0.conv1.weight',
           'neck.lateral_convs.0.conv.weight', 'rpn_head.rpn_conv.weight',
           'roi_head.bbox_head.fc_cls.weight', 'roi_head.mask_head.convs.0.conv.weight')


@pytest.fixture(scope='module')
def cfg(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp('coco_shapes')
    generate_coco_shapes(root, num_train=4, num_val=2, image_size=SIZE)
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': f'{root}/',
        'train_dataloader.dataset.pipeline.2.scale': (SIZE, SIZE),
        'train_dataloader.dataset.pipeline.3.prob': 0.0,  # no flip: a fixed batch
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
    })
    return cfg


@pytest.fixture(scope='module')
def data(cfg: Config) -> dict:
    init_default_scope('mmdet')
    return next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))


@pytest.fixture(scope='module')
def initial_model(cfg: Config) -> torch.nn.Module:
    init_default_scope('mmdet')
    torch.manual_seed(0)
    return MODELS.build(cfg.model).train()


@pytest.fixture
def model(initial_model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(initial_model)


def mutual(**kwargs) -> dict:
    return dict(dict(num_subnets=4, scales=SCALES, rescaler=dict(type='DetBatchRescaler')),
                **kwargs)


class Recorder:
    """Records each pass (input shape, width), each parameter gradient and optimizer step."""

    def __init__(self, model: torch.nn.Module, optim_wrapper: OptimWrapper) -> None:
        self.passes: List[tuple] = []
        self.contributions: Dict[str, List[torch.Tensor]] = {name: [] for name in WATCHED}
        self.grads_at_step: List[Dict[str, torch.Tensor]] = []
        params = dict(model.named_parameters())
        self._handles = [model.backbone.register_forward_pre_hook(
            lambda _m, args: self.passes.append((tuple(args[0].shape),
                                                 mutualnet_mm.get_width(model))))]
        for name in WATCHED:
            self._handles.append(params[name].register_hook(
                lambda grad, name=name: self.contributions[name].append(grad.clone())))
        optimizer = optim_wrapper.optimizer
        original_step = optimizer.step

        def step(*args, **kwargs):
            self.grads_at_step.append({name: params[name].grad.clone() for name in WATCHED})
            return original_step(*args, **kwargs)
        optimizer.step = step

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def recording(model: torch.nn.Module, optim_wrapper: OptimWrapper) -> Iterator[Recorder]:
    recorder = Recorder(model, optim_wrapper)
    try:
        yield recorder
    finally:
        recorder.remove()


def sgd(model: torch.nn.Module) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))


def run_step(model, data, step: MutualTrainStep, iteration: int = 3, seed: int = 0):
    optim_wrapper = sgd(model)
    with recording(model, optim_wrapper) as recorder:
        torch.manual_seed(seed)  # the RPN and RoI samplers draw at random
        log_vars = step(model, copy.deepcopy(data), optim_wrapper, iteration)
    return log_vars, recorder, optim_wrapper


def padded(size: int, scale: float) -> int:
    return math.ceil(round(size * scale) / 32) * 32


def test_an_iteration_runs_the_cohort_then_one_optimizer_step(model, data) -> None:
    step = MutualTrainStep.from_config(mutual(), model, seed=0)
    cohort = step.sampler.cohort(3)
    assert [c.scale for c in cohort] != [1.0] * 4  # the seed gives some rescaled passes
    before = model.backbone.layer2[0].conv1.weight.detach().clone()
    log_vars, recorder, optim_wrapper = run_step(model, data, step)

    assert [width for _, width in recorder.passes] == pytest.approx([c.width for c in cohort])
    assert [shape for shape, _ in recorder.passes] == [
        (2, 3, padded(SIZE, c.scale), padded(SIZE, c.scale)) for c in cohort]
    assert len(recorder.grads_at_step) == 1
    assert optim_wrapper.inner_count == 1
    assert not torch.equal(model.backbone.layer2[0].conv1.weight, before)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert mutualnet_mm.get_width(model) == 1.0

    # Every pass reaches every part; the step sees the sum of the passes' gradients.
    for name in WATCHED:
        contributions = recorder.contributions[name]
        assert len(contributions) == 4, name
        assert all(g.any() for g in contributions), name
        torch.testing.assert_close(recorder.grads_at_step[0][name], sum(contributions))

    # One loss per pass; the stock terms are the full pass's; `loss` is the passes' sum.
    passes = ['loss_full', 'loss_mid1', 'loss_mid2', 'loss_min']
    assert pass_names(4) == passes
    assert STOCK_LOSSES | {'loss', *passes} <= set(log_vars)
    stock_total = sum(v for k, v in log_vars.items() if k.startswith('loss_') and
                      k not in passes)
    torch.testing.assert_close(log_vars['loss_full'], stock_total.detach())
    torch.testing.assert_close(log_vars['loss'], sum(log_vars[k] for k in passes))


def test_gradients_accumulate_over_the_cohort(initial_model, data) -> None:
    full_only = copy.deepcopy(initial_model)
    cohort = copy.deepcopy(initial_model)
    one = MutualTrainStep.from_config(mutual(num_subnets=1, width_range=(1.0, 1.0)),
                                      full_only)
    four = MutualTrainStep.from_config(mutual(num_subnets=4), cohort)
    _, alone, _ = run_step(full_only, data, one)
    _, together, _ = run_step(cohort, data, four)
    assert [w for _, w in alone.passes] == [1.0]
    for name in WATCHED:
        full_pass = alone.grads_at_step[0][name]
        # The full pass is the same in both; the other three add to it.
        torch.testing.assert_close(together.contributions[name][0], full_pass)
        rest = sum(together.contributions[name][1:])
        assert rest.abs().sum() > 1e-3 * full_pass.abs().sum(), name
        torch.testing.assert_close(together.grads_at_step[0][name], full_pass + rest)


def test_feature_distillation_adds_its_loss(model, data) -> None:
    step = MutualTrainStep.from_config(
        mutual(distill=dict(type='FeatureDistiller', module='neck', weight=1.0)), model)
    log_vars, recorder, _ = run_step(model, data, step)
    assert len(recorder.passes) == 4 and len(recorder.grads_at_step) == 1
    assert 'loss_distill' in log_vars
    assert torch.isfinite(log_vars['loss_distill']) and log_vars['loss_distill'] > 0
    assert STOCK_LOSSES <= set(log_vars)


def test_rpn_output_distillation_adds_its_loss(model, data) -> None:
    step = MutualTrainStep.from_config(mutual(distill=dict(type='RPNOutputDistiller')), model)
    log_vars, recorder, _ = run_step(model, data, step)
    assert len(recorder.passes) == 4 and len(recorder.grads_at_step) == 1
    assert torch.isfinite(log_vars['loss_distill']) and log_vars['loss_distill'] > 0
    assert STOCK_LOSSES <= set(log_vars)


def test_a_distiller_on_a_missing_module_is_named(model, data) -> None:
    step = MutualTrainStep.from_config(
        mutual(distill=dict(type='FeatureDistiller', module='necks')), model)
    with pytest.raises(ValueError, match="distill.module 'necks' is not a submodule"):
        run_step(model, data, step)


@contextmanager
def nan_features_at_width(model: torch.nn.Module, width: float) -> Iterator[None]:
    """The neck's outputs turn NaN in the passes at ``width`` (features that blew up)."""
    def hook(_module, _inputs, outputs):
        if mutualnet_mm.get_width(model) == width:
            return tuple(out * float('nan') for out in outputs)
        return None
    handle = model.neck.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_a_nonfinite_loss_names_its_configuration(model, data) -> None:
    step = MutualTrainStep.from_config(mutual(), model)
    smallest = step.sampler.cohort(3)[-1]
    with nan_features_at_width(model, 0.25):
        with pytest.raises(NonFiniteLossError, match=rf'configuration {smallest.name} '
                           r'\(width=0.2500, .*iteration 3.*skip_nonfinite=True'):
            run_step(model, data, step)
    assert mutualnet_mm.get_width(model) == 1.0


def test_a_nonfinite_pass_can_be_skipped(model, data) -> None:
    step = MutualTrainStep.from_config(mutual(skip_nonfinite=True), model)
    with nan_features_at_width(model, 0.25):
        log_vars, recorder, _ = run_step(model, data, step)
    assert len(recorder.passes) == 4 and len(recorder.grads_at_step) == 1
    assert log_vars['skipped'] == 1
    assert torch.isfinite(log_vars['loss'])
    for name in WATCHED:
        contributions = recorder.contributions[name]
        # The skipped pass adds nothing; the others are kept.
        assert torch.isfinite(recorder.grads_at_step[0][name]).all(), name
        torch.testing.assert_close(recorder.grads_at_step[0][name], sum(contributions[:3]))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_frozen_norm_statistics_are_refused(model) -> None:
    check_trainable_norms(model)
    model.backbone.norm_eval = True
    with pytest.raises(ValueError, match='backbone keeps 20 batch norm.*norm_eval=False'):
        check_trainable_norms(model)
    model.backbone.norm_eval = False
    model.backbone.frozen_stages = 1  # stem and layer1 in eval mode
    with pytest.raises(ValueError, match="backbone keeps 5 batch norm.*'bn1'.*frozen_stages=-1"):
        check_trainable_norms(model)


def test_unknown_mutual_keys_are_named(model) -> None:
    with pytest.raises(KeyError, match=r"\['num_subnet', 'scale'\]"):
        MutualTrainStep.from_config(dict(num_subnet=4, scale=(1.0,)), model)


def test_width_range_must_lie_in_the_models(model) -> None:
    with pytest.raises(ValueError, match=r'width_range \(0.1, 1.0\) is outside the range '
                                         r'\(0.25, 1.0\)'):
        MutualTrainStep.from_config(mutual(width_range=(0.1, 1.0)), model)
    step = MutualTrainStep.from_config(mutual(width_range=(0.5, 0.75)), model)
    assert step.sampler.cohort(0)[0].width == 0.75 and step.sampler.cohort(0)[-1].width == 0.5
    # Without mutual.rescaler: the one registered for the detector's data preprocessor.
    default = MutualTrainStep.from_config(dict(num_subnets=2), model).rescaler
    assert isinstance(default, DetBatchRescaler)


def test_decoupled_widths_train_each_pass_at_its_two_widths(model, data) -> None:
    step = MutualTrainStep.from_config(mutual(head_width_range=(0.25, 1.0)), model, seed=0)
    cohort = step.sampler.cohort(3)
    seen = []
    handles = [model.backbone.register_forward_pre_hook(
        lambda _m, _args: seen.append(mutualnet_mm.ops.get_widths(model)))]
    before = model.roi_head.bbox_head.fc_cls.weight.detach().clone()
    optim_wrapper = sgd(model)
    torch.manual_seed(0)
    try:
        log_vars = step(model, copy.deepcopy(data), optim_wrapper, 3)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == [(c.width, c.head_width) for c in cohort]
    assert len({w for w, _ in seen}) > 1 and len({h for _, h in seen}) > 1
    assert any(w != h for w, h in seen)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(model.roi_head.bbox_head.fc_cls.weight, before)
    assert mutualnet_mm.ops.get_widths(model) == (1.0, 1.0)


def test_head_width_range_is_checked(model) -> None:
    with pytest.raises(ValueError, match=r'head_width_range \(0.1, 1.0\) is outside the '
                                         r'range \(0.25, 1.0\)'):
        MutualTrainStep.from_config(mutual(head_width_range=(0.1, 1.0)), model)
    backbone_alone = torch.nn.ModuleDict(dict(backbone=copy.deepcopy(model.backbone)))
    with pytest.raises(ValueError, match='slims its backbone only'):
        MutualTrainStep.from_config(dict(num_subnets=2, head_width_range=(0.5, 1.0),
                                         rescaler=dict(type='DetBatchRescaler')),
                                    backbone_alone)


@pytest.mark.parametrize('max_iters, expected', [(1200, 600), (100, 50), (7, 4)])
def test_the_warm_up_fraction_follows_the_schedule(model, max_iters, expected) -> None:
    step = MutualTrainStep.from_config(mutual(full_only_fraction=0.5), model,
                                       max_iters=max_iters)
    assert step.sampler.full_only_iters == expected
    assert len(step.sampler.cohort(expected - 1)) == 1
    assert len(step.sampler.cohort(expected)) == 4


@pytest.mark.parametrize('settings, max_iters, message', [
    (dict(full_only_iters=600), 300, 'first 600 iterations covers the whole schedule of 300'),
    (dict(full_only_fraction=0.5, full_only_iters=10), 100, 'not both'),
    (dict(full_only_fraction=1.0), 100, r'full_only_fraction must be a number in \[0, 1\)'),
    (dict(full_only_fraction='half'), 100, r'full_only_fraction must be a number in \[0, 1\)'),
    (dict(full_only_fraction=0.5), None, 'needs the schedule length'),
])
def test_a_warm_up_that_leaves_the_cohort_untrained_is_refused(model, settings, max_iters,
                                                                message) -> None:
    with pytest.raises(ValueError, match=message):
        MutualTrainStep.from_config(mutual(**settings), model, max_iters=max_iters)


def test_the_cohort_joining_is_logged_once(monkeypatch) -> None:
    logged = []
    monkeypatch.setattr(loops, 'print_log', lambda message, **_: logged.append(message))
    def step(*args) -> dict:
        return {}

    step.sampler = CohortSampler((0.25, 1.0), 4, (1.0,), full_only_iters=2)
    loop = SimpleNamespace(_iter=0, mutual_step=step, runner=SimpleNamespace(
        call_hook=lambda *args, **kwargs: None, model=None, optim_wrapper=None))
    for index in range(5):
        loops._MutualTrainMixin._mutual_iter(loop, index, None)
    assert logged == ['iteration 3: the warm-up of 2 iterations is over, the cohort of 3 '
                      'narrower configurations joins: the logged loss is now the sum over 4 '
                      'passes (loss_full + loss_mid1 + loss_mid2 + loss_min)']


def test_a_trial_cohort_step_is_timed_and_undone(model, data) -> None:
    step = MutualTrainStep.from_config(mutual(), model)
    trial_model, optim_wrapper = copy.deepcopy(model), sgd(model)
    trial_wrapper = sgd(trial_model)
    generator = torch.get_rng_state()
    passes = time_cohort_passes(step, trial_model, copy.deepcopy(data), trial_wrapper, 3)
    assert [config for config, _ in passes] == step.sampler.cohort(3)
    assert all(seconds > 0 for _, seconds in passes)
    assert torch.equal(torch.get_rng_state(), generator)
    assert trial_wrapper.inner_count == 0
    assert all(p.grad is None for p in trial_model.parameters())
    before = model.state_dict()
    for key, value in trial_model.state_dict().items():  # weights and BN statistics
        assert torch.equal(value, before[key]), key
    # The next real step trains exactly as it would have without the trial.
    for net, wrapper in ((model, optim_wrapper), (trial_model, trial_wrapper)):
        torch.manual_seed(0)
        step(net, copy.deepcopy(data), wrapper, 3)
    after = model.state_dict()
    for key, value in trial_model.state_dict().items():
        assert torch.equal(value, after[key]), key
