"""An ETA for mutual training: measured cohort passes and the evaluations still to run.

mmengine's ``IterTimerHook`` extrapolates the mean iteration time. During the warm-up
(the full configuration alone) that misses the cohort iterations to come, several times
costlier, and it leaves out the per-configuration evaluation after training. Narrower
passes do not cost time in proportion to their FLOPs (a pass has fixed costs: the loss,
proposal sampling, data movement), so the cohort's cost is measured, not modelled: once,
early in the warm-up, a trial cohort step runs on the current batch and is undone.
"""
import copy
import random
import time
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop
from torch import nn

from ..models.wrappers import unwrap
from .hooks import set_torch_random_state, torch_random_state
from .mutual_step import MutualTrainStep, NonFiniteLossError
from .subnet import SubnetConfig


def synchronize() -> None:
    """Wait for queued GPU work, so that a clock reading covers it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def preserved_random_states() -> Iterator[None]:
    """Restore the ``random``, numpy and torch (CPU and CUDA) generators on exit."""
    states = random.getstate(), np.random.get_state(), torch_random_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        set_torch_random_state(states[2])


@contextmanager
def undone(module: nn.Module, optim_wrapper) -> Iterator[None]:
    """Undo what a step that does not update the weights changes: buffers (batch-norm
    statistics), gradients, the random generators and the backward count."""
    buffers = [(buffer, buffer.detach().clone()) for buffer in module.buffers()]
    grads = [(param, None if param.grad is None else param.grad.detach().clone())
             for param in module.parameters()]
    count = optim_wrapper._inner_count
    try:
        with preserved_random_states():
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for param, grad in grads:
            param.grad = grad
        optim_wrapper._inner_count = count


class _WithoutUpdate:
    """An optimizer wrapper that computes gradients and never updates the weights."""

    def __init__(self, optim_wrapper) -> None:
        self._wrapped = optim_wrapper

    def __getattr__(self, name: str):
        return getattr(self._wrapped, name)

    @staticmethod
    def should_update() -> bool:
        return False


class _ClockedRescaler:
    """Passes batches to a rescaler and notes when each pass (configuration) starts."""

    def __init__(self, rescaler) -> None:
        self.rescaler = rescaler
        self.starts: List[Tuple[SubnetConfig, float]] = []

    def __call__(self, inputs, data_samples, config: SubnetConfig):
        synchronize()
        self.starts.append((config, time.perf_counter()))
        return self.rescaler(inputs, data_samples, config)


def time_cohort_passes(step: MutualTrainStep, model: nn.Module, data: dict, optim_wrapper,
                       iteration: int) -> List[Tuple[SubnetConfig, float]]:
    """Run the cohort of ``iteration`` on ``data`` without changing anything; return each
    pass's configuration and seconds (rescaling, forward and backward).

    The weights are not updated; batch-norm statistics, gradients, the random generators
    and the optimizer wrapper's count are as before. Under DDP every rank must call it
    at the same iteration (the last pass synchronizes gradients).
    """
    clocked = _ClockedRescaler(step.rescaler)
    trial = copy.copy(step)
    trial.rescaler = clocked
    with undone(unwrap(model), optim_wrapper):
        trial(model, data, _WithoutUpdate(optim_wrapper), iteration)
        synchronize()
        end = time.perf_counter()
    ends = [start for _, start in clocked.starts[1:]] + [end]
    return [(config, stop - start) for (config, start), stop in zip(clocked.starts, ends)]


def fit_pass_seconds(passes: Sequence[Tuple[SubnetConfig, float]],
                     full: SubnetConfig) -> Tuple[float, float]:
    """Least-squares ``seconds = fixed + per_cost * relative_cost`` over measured passes.

    Returns:
        ``(fixed, per_cost)``, both at least 0 (a noisy fit falls back to the mean).
    """
    costs = np.array([config.relative_cost(full) for config, _ in passes])
    seconds = np.array([s for _, s in passes])
    if len(passes) > 1 and np.ptp(costs) > 0:
        per_cost, fixed = np.polyfit(costs, seconds, 1)
        if per_cost >= 0 and fixed >= 0:
            return float(fixed), float(per_cost)
        if per_cost >= 0:  # no fixed part: through the origin
            return 0.0, float(seconds @ costs / (costs @ costs))
    return float(seconds.mean()), 0.0


def validations_left(train_loop, runner_has_val: bool) -> int:
    """How many validations the train loop still runs after its current position."""
    if not runner_has_val:
        return 0
    done, total = (train_loop.epoch, train_loop.max_epochs) \
        if isinstance(train_loop, EpochBasedTrainLoop) else (train_loop.iter, train_loop.max_iters)
    first = max(done + 1, train_loop.val_begin)
    if first > total:
        return 0
    interval = train_loop.val_interval
    multiples = total // interval - (first - 1) // interval
    return multiples + (total % interval != 0)


@HOOKS.register_module()
class MutualEtaHook(Hook):
    """An ETA that knows the training's two phases and the evaluations to come.

    It runs after ``IterTimerHook`` and before the logger, and replaces its ``eta``:

    - training: the remaining warm-up and cohort iterations at their mean times, plus
      the validations left at the last one's time. Before any cohort iteration or
      validation ran, both are estimated at this process's second iteration: trial
      cohort steps (:func:`time_cohort_passes`, :func:`fit_pass_seconds`) and the
      validation loop's ``estimate_seconds``;
    - evaluation: the grid's own ETA (``grid_eta``), plus the training and validations
      after it.

    The mutual train loop and the per-configuration loops register it.
    """

    priority = 55  # after IterTimerHook (NORMAL, 50), before LoggerHook (BELOW_NORMAL, 60)

    def __init__(self, cohorts: int = 64) -> None:
        self.cohorts = cohorts
        self._seconds = {'warm-up': 0.0, 'cohort': 0.0}
        self._counts = {'warm-up': 0, 'cohort': 0}
        self._iterations = 0
        self._probe_seconds = 0.0  # spent measuring: not part of the next iteration's time
        self._narrower_passes: Optional[float] = None
        self._validation: Optional[float] = None
        self._validation_start: Optional[float] = None

    def _probe(self, runner, step: MutualTrainStep, data_batch) -> None:
        """Estimate a cohort's narrower passes and a validation; note the time spent."""
        start = time.perf_counter()
        sampler = step.sampler
        if runner.iter + 1 < sampler.full_only_iters and data_batch is not None:
            try:  # the first trial bears one-off costs; the second, another cohort, counts
                passes = [time_cohort_passes(step, runner.model, data_batch,
                                             runner.optim_wrapper, sampler.full_only_iters + i)
                          for i in range(2)][-1]
            except NonFiniteLossError:  # untrained weights; the cohort's own times will do
                passes = []
            if passes:
                fixed, per_cost = fit_pass_seconds(passes, sampler.full)
                upcoming = [sampler.cohort(sampler.full_only_iters + i)[1:]
                            for i in range(self.cohorts)]
                self._narrower_passes = float(np.mean([
                    sum(fixed + per_cost * c.relative_cost(sampler.full) for c in cohort)
                    for cohort in upcoming]))
        estimate = getattr(runner.val_loop, 'estimate_seconds', None)
        if callable(estimate) and self._validation is None:
            was_training = runner.model.training
            self._validation = estimate()
            runner.model.train(was_training)
        self._probe_seconds = time.perf_counter() - start
        estimates = []
        if self._narrower_passes is not None:
            full = self._seconds['warm-up'] / max(1, self._counts['warm-up'])
            estimates.append(f'a cohort iteration {full + self._narrower_passes:.2f} s (the '
                             f'full configuration alone {full:.2f} s)')
        if self._validation is not None:
            estimates.append(f'a validation {self._validation:.1f} s')
        if estimates:
            print_log(f'ETA: {" and ".join(estimates)}, estimated in '
                      f'{self._probe_seconds:.1f} s', logger='current')

    def _training_left(self, runner, done: int) -> float:
        """Seconds of training left after ``done`` iterations."""
        warm_up = runner.train_loop.mutual_step.sampler.full_only_iters
        warm_left = max(0, warm_up - done)
        cohort_left = max(0, runner.max_iters - max(done, warm_up))
        mean = {p: self._seconds[p] / self._counts[p] for p in self._seconds if self._counts[p]}
        if 'cohort' not in mean and 'warm-up' in mean:
            mean['cohort'] = mean['warm-up'] + (self._narrower_passes or 0.0)
        return warm_left * mean.get('warm-up', 0.0) + cohort_left * mean.get('cohort', 0.0)

    def _after_training(self, runner, done: int) -> float:
        """Seconds of training and validations left after ``done`` iterations."""
        return self._training_left(runner, done) + (self._validation or 0.0) * \
            validations_left(runner.train_loop, runner.val_loop is not None)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        step = getattr(runner.train_loop, 'mutual_step', None)
        if step is None or 'train/time' not in runner.message_hub.log_scalars:
            return
        phase = 'warm-up' if runner.iter < step.sampler.full_only_iters else 'cohort'
        seconds = float(runner.message_hub.get_scalar('train/time').current())
        self._seconds[phase] += max(0.0, seconds - self._probe_seconds)
        self._counts[phase] += 1
        self._probe_seconds = 0.0
        self._iterations += 1
        if self._iterations == 2:  # the first carries one-off costs
            self._probe(runner, step, data_batch)
        runner.message_hub.update_info('eta', self._after_training(runner, runner.iter + 1))

    def before_val(self, runner) -> None:
        self._validation_start = time.perf_counter()

    def after_val(self, runner) -> None:
        if self._validation_start is not None:
            self._validation = time.perf_counter() - self._validation_start

    def _after_eval_iter(self, runner, loop, then: float = 0.0) -> None:
        eta = getattr(loop, 'grid_eta', None)
        if callable(eta) and eta() is not None:
            runner.message_hub.update_info('eta', eta() + then)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loop = runner._train_loop
        training = loop is not None and not isinstance(loop, dict) and \
            hasattr(loop, 'mutual_step') and self._counts['warm-up'] + self._counts['cohort']
        then = self._after_training(runner, runner.iter) if training else 0.0
        self._after_eval_iter(runner, runner.val_loop, then)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._after_eval_iter(runner, runner.test_loop)


__all__ = ['MutualEtaHook', 'fit_pass_seconds', 'preserved_random_states',
           'time_cohort_passes', 'validations_left']
