"""The ETA of a mutual training knows its phases; the grid's ETA spans every configuration."""
from types import SimpleNamespace

import pytest
from mmengine.logging import MessageHub

from mutualnet_mm.engine import CohortSampler
from mutualnet_mm.engine.hooks import MutualEtaHook
from mutualnet_mm.evaluation import loops

SAMPLER = CohortSampler((0.25, 1.0), 4, (1.0, 0.5), seed=0, full_only_iters=4)


def train_runner(hub: MessageHub) -> SimpleNamespace:
    loop = SimpleNamespace(mutual_step=SimpleNamespace(sampler=SAMPLER))
    return SimpleNamespace(train_loop=loop, message_hub=hub, iter=0, max_iters=10)


def run_iteration(hook: MutualEtaHook, runner: SimpleNamespace, seconds: float) -> float:
    runner.message_hub.update_scalar('train/time', seconds)
    runner.message_hub.update_info('eta', -1.0)  # what IterTimerHook would have set
    hook.after_train_iter(runner, runner.iter)
    runner.iter += 1
    return runner.message_hub.get_info('eta')


def test_warm_up_eta_includes_the_costlier_cohort_phase() -> None:
    hook, runner = MutualEtaHook(), train_runner(MessageHub.get_instance('eta-test'))
    cohort_cost = MutualEtaHook.expected_cohort_cost(SAMPLER, 4)
    assert 1.0 < cohort_cost < 4.0  # the full configuration plus three cheaper ones
    # iteration 0 of 10 (warm-up 0-3) took 1 s: 3 warm-up and 6 cohort iterations left
    assert run_iteration(hook, runner, 1.0) == pytest.approx(3 + 6 * cohort_cost)
    for _ in range(3):
        eta = run_iteration(hook, runner, 1.0)
    assert eta == pytest.approx(6 * cohort_cost)
    # once cohort iterations ran, their own mean time counts
    assert run_iteration(hook, runner, 3.0) == pytest.approx(5 * 3.0)
    assert run_iteration(hook, runner, 5.0) == pytest.approx(4 * 4.0)


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
