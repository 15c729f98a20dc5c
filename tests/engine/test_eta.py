"""The ETA of a mutual training knows its phases and the evaluations to come; the grid's
ETA spans every configuration."""
import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.deploy import build_adaptive_model
from mutualnet_mm.engine import CohortSampler, SubnetConfig
from mutualnet_mm.engine.eta import MutualEtaHook, fit_pass_seconds, validations_left
from mutualnet_mm.engine.rescale import build_rescaler, default_rescaler
from mutualnet_mm.evaluation import loops
from mutualnet_mm.ops import get_width

from ..deploy.demo import IMAGE_SIZE, tiny_demo_config

SAMPLER = CohortSampler((0.25, 1.0), 4, (1.0, 0.5), seed=0, full_only_iters=4)
FULL = SAMPLER.full


def test_pass_times_fit_a_fixed_part_and_a_part_in_proportion_to_the_cost() -> None:
    passes = [(SubnetConfig(w, s), 0.2 + 0.8 * SubnetConfig(w, s).relative_cost(FULL))
              for w, s in ((1.0, 1.0), (0.7, 1.0), (0.4, 0.5), (0.25, 0.5))]
    assert fit_pass_seconds(passes, FULL) == pytest.approx((0.2, 0.8))
    # Noise that makes narrower passes slower falls back to their mean.
    slower = [(SubnetConfig(1.0, 1.0), 1.0), (SubnetConfig(0.25, 1.0), 2.0)]
    assert fit_pass_seconds(slower, FULL) == pytest.approx((1.5, 0.0))
    assert fit_pass_seconds([(FULL, 3.0)], FULL) == (3.0, 0.0)


def loop_at(cls, position: int, total: int, interval: int, begin: int = 1):
    loop = object.__new__(cls)
    if cls is EpochBasedTrainLoop:
        loop._epoch, loop._max_epochs = position, total
    else:
        loop._iter, loop._max_iters = position, total
    loop.val_interval, loop.val_begin = interval, begin
    return loop


@pytest.mark.parametrize('cls', [EpochBasedTrainLoop, IterBasedTrainLoop])
def test_the_validations_left_follow_the_loops_rule(cls) -> None:
    def brute(position, total, interval, begin):
        return sum(1 for p in range(position + 1, total + 1)
                   if p >= begin and (p % interval == 0 or p == total))
    for position, total, interval, begin in itertools.product(range(0, 13), (12, 13),
                                                               (1, 4, 12, 20), (1, 6)):
        loop = loop_at(cls, position, total, interval, begin)
        assert validations_left(loop, True) == brute(position, total, interval, begin), \
            (position, total, interval, begin)
    assert validations_left(loop_at(cls, 0, 12, 4), False) == 0


def train_runner(hub: MessageHub, loop) -> SimpleNamespace:
    loop.mutual_step = SimpleNamespace(sampler=SAMPLER)
    return SimpleNamespace(train_loop=loop, _train_loop=loop, message_hub=hub, iter=0,
                           max_iters=10, val_loop=object())


def run_iteration(hook: MutualEtaHook, runner: SimpleNamespace, seconds: float) -> float:
    runner.message_hub.update_scalar('train/time', seconds)
    runner.message_hub.update_info('eta', -1.0)  # what IterTimerHook would have set
    hook.after_train_iter(runner, runner.iter)
    runner.iter += 1
    runner.train_loop._iter = runner.iter
    return runner.message_hub.get_info('eta')


def test_the_warm_up_eta_counts_the_measured_cohort_and_the_final_validation(monkeypatch):
    hook = MutualEtaHook()
    # 10 iterations (warm-up 0-3), one validation at the end of the schedule
    runner = train_runner(MessageHub.get_instance('eta-test'),
                          loop_at(IterBasedTrainLoop, 0, 10, 10))

    def probe(runner, step, data_batch):  # narrower passes 2 s, a validation 5 s
        hook._narrower_passes, hook._validation, hook._probe_seconds = 2.0, 5.0, 7.0
    monkeypatch.setattr(hook, '_probe', probe)
    # before the probe: what was measured (the warm-up's time)
    assert run_iteration(hook, runner, 1.0) == pytest.approx(3 + 6 * 1.0)
    # iteration 1 probes: cohort iterations are warm-up iterations plus narrower passes
    assert run_iteration(hook, runner, 1.0) == pytest.approx(2 + 6 * 3.0 + 5.0)
    # the probe's 7 s are not part of the next iteration's time
    assert run_iteration(hook, runner, 8.0) == pytest.approx(1 + 6 * 3.0 + 5.0)
    assert run_iteration(hook, runner, 1.0) == pytest.approx(6 * 3.0 + 5.0)
    # once cohort iterations ran, their own mean time counts
    assert run_iteration(hook, runner, 4.0) == pytest.approx(5 * 4.0 + 5.0)
    assert run_iteration(hook, runner, 6.0) == pytest.approx(4 * 5.0 + 5.0)
    # a validation's measured time replaces the estimate
    hook._validation = 9.0
    assert run_iteration(hook, runner, 5.0) == pytest.approx(3 * 5.0 + 9.0)


def test_grid_eta_comes_from_the_loop() -> None:
    hub = MessageHub.get_instance('eta-grid-test')
    hub.update_info('eta', 1.0)
    loop = SimpleNamespace(grid_eta=lambda: 42.0)
    MutualEtaHook().after_test_iter(SimpleNamespace(test_loop=loop, message_hub=hub), 0)
    assert hub.get_info('eta') == 42.0


def test_grid_eta_extrapolates_over_every_configuration(monkeypatch) -> None:
    # 4 configurations x 2 batches; 2 batches (and their calibration) took 10 s
    loop = SimpleNamespace(grid=[1, 2, 3, 4], dataloader=[0, 0], _grid_clock=(100.0, 2))
    monkeypatch.setattr(loops.time, 'perf_counter', lambda: 110.0)
    assert loops._PerConfigMixin.grid_eta(loop) == pytest.approx(10 / 2 * 6)
    loop._grid_clock = (100.0, 0)
    assert loops._PerConfigMixin.grid_eta(loop) is None


def test_a_validation_is_estimated_from_one_batch_at_its_largest_and_smallest(
        tmp_path, monkeypatch) -> None:
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(loops.time, 'perf_counter', lambda: clock.now)

    class Loader(list):
        batch_size, num_workers, collate_fn, persistent_workers = 1, 1, None, True

        def __iter__(self):  # starting takes 3 s, each batch 1 s
            clock.now += 3.0
            for batch in list.__iter__(self):
                clock.now += 1.0
                yield batch

    monkeypatch.setattr(loops, 'DataLoader', lambda dataset, **settings: Loader(dataset))

    def predict(module, batch, config):  # 2 s plus 8 s per unit of relative cost
        assert get_width(module) == config.width
        clock.now += 2.0 + 8.0 * config.relative_cost(FULL)

    loop = object.__new__(loops.PerConfigValLoop)
    model = build_adaptive_model(tiny_demo_config(str(tmp_path)))
    grid = [SubnetConfig(w, s) for w in (1.0, 0.5, 0.25) for s in (1.0, 0.5)]
    loop._runner, loop.grid = SimpleNamespace(model=model), grid
    loop.dataloader = Loader([{}] * 5)
    loop.dataloader.dataset = loop.dataloader
    loop.num_calibration_batches, loop._predict = 4, predict
    expected = (1 + len(grid)) * 3.0 + sum(  # loader starts, calibration and evaluation
        (4 + 5) * (1.0 + 2.0 + 8.0 * c.relative_cost(FULL)) for c in grid)
    assert loop.estimate_seconds() == pytest.approx(expected)
    loop.dataloader.persistent_workers = False
    assert loop.estimate_seconds() == pytest.approx(expected + (len(grid) - 1) * 3.0)
    assert get_width(model) == 1.0 and not model.training


def test_estimating_a_validation_changes_nothing(tmp_path) -> None:
    generate_coco_shapes(str(tmp_path), num_train=2, num_val=4, image_size=IMAGE_SIZE)
    cfg = tiny_demo_config(str(tmp_path))
    model = build_adaptive_model(cfg).train()
    loop = object.__new__(loops.PerConfigValLoop)
    DefaultScope.get_instance('eta-estimate', scope_name='mmdet')
    loop._runner = SimpleNamespace(model=model)
    cfg.val_dataloader.update(num_workers=1, persistent_workers=True)
    loop.dataloader = Runner.build_dataloader(cfg.val_dataloader, seed=0)
    loop.grid = [SubnetConfig(w, s) for w in (1.0, 0.25) for s in (1.0, 0.5)]
    loop.num_calibration_batches, loop.fp16 = 2, False
    loop.rescaler = build_rescaler(default_rescaler(model))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generators = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    assert loop.estimate_seconds() > 0
    assert random.getstate() == generators[0]
    assert np.array_equal(np.random.get_state()[1], generators[1])
    assert torch.equal(torch.get_rng_state(), generators[2])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # The evaluation then starts its loader's workers (drawing their seed) as it would have.
    iter(loop.dataloader)
    after_start = torch.get_rng_state()
    torch.set_rng_state(generators[2])
    iter(Runner.build_dataloader(cfg.val_dataloader, seed=0))
    assert torch.equal(torch.get_rng_state(), after_start)
