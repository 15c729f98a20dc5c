"""mutualnet_mm.tools_common: what the tools share."""
import argparse
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import PARAM_SCHEDULERS
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.nn.parallel import DistributedDataParallel

from mutualnet_mm import tools_common
from mutualnet_mm.tools_common import (
    follow_schedule_length,
    leave_distributed,
    load_tool_config,
    schedule_length,
    stop_loader_workers,
)

from .reliability.tiny_detection import DEMO_CONFIG as DEMO


def os_threads() -> int:
    return len(os.listdir('/proc/self/task'))


def test_leave_distributed_joins_the_gloo_threads(tmp_path) -> None:
    """No gloo worker thread may outlive the group into interpreter shutdown (SIGABRT)."""
    torch.nn.Linear(3, 2)(torch.ones(4, 3)).sum().backward()  # any lazy torch threads
    before = os_threads()
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    model = DistributedDataParallel(torch.nn.Linear(3, 2))
    model(torch.ones(4, 3)).sum().backward()
    dist.all_gather_object([None], {'state': 1})
    assert os_threads() > before  # the group's worker threads
    del model  # as the tools delete the runner: its DDP wrapper holds the group
    leave_distributed()
    assert not dist.is_initialized()
    assert os_threads() == before


def final_learning_rate(cfg, iters_per_epoch: int = 50) -> float:
    """The learning rate of the last iteration of ``cfg``'s schedule, stepped as mmengine's
    ``ParamSchedulerHook`` steps it (iteration schedulers each iteration, epoch schedulers
    each epoch), on a dummy optimizer; 50 iterations per epoch as in the demo."""
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(),
                                lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optimizer))
                  for scheduler in cfg.param_scheduler]
    for _ in range(cfg.train_cfg.max_epochs):
        for _ in range(iters_per_epoch):
            for scheduler in schedulers:
                if not scheduler.by_epoch:
                    scheduler.step()
        for scheduler in schedulers:
            if scheduler.by_epoch:
                scheduler.step()
    return optimizer.param_groups[0]['lr']


def test_a_shorter_schedule_decays_the_learning_rate_over_its_own_length(monkeypatch) -> None:
    logged = []
    monkeypatch.setattr(tools_common, 'print_log', lambda message, **_: logged.append(message))
    args = argparse.Namespace(config=str(DEMO), launcher='none', local_rank=0, work_dir=None,
                              cfg_options={'train_cfg.max_epochs': 4})
    cfg = load_tool_config(args)  # as tools/train.py loads it
    cosine = cfg.param_scheduler[1]
    assert (cosine.end, cosine.T_max) == (4, 4)

    def last_epoch_lr(epochs: int) -> float:  # the cosine's step before its end
        lr = cfg.optim_wrapper.optimizer.lr
        return cosine.eta_min + (lr - cosine.eta_min) * (1 + math.cos(
            math.pi * (epochs - 1) / epochs)) / 2

    # The last epoch trains where the cosine ends (not at 1.9e-3: 4 of 24 epochs in);
    # within 1%: the warm-up's first 100 iterations change the chained cosine slightly.
    assert final_learning_rate(cfg) == pytest.approx(last_epoch_lr(4), rel=0.01)
    assert final_learning_rate(cfg) < 0.2 * cfg.optim_wrapper.optimizer.lr
    written = Config.fromfile(str(DEMO))
    assert final_learning_rate(written) == pytest.approx(last_epoch_lr(24), rel=0.01)
    assert cfg.param_scheduler[0] == written.param_scheduler[0]  # a warm-up in iterations
    assert logged == ["train_cfg.max_epochs is 4 instead of the config's 24: the "
                      'param_scheduler settings in epochs are scaled by 4/24 '
                      '(CosineAnnealingLR.end 24 -> 4, CosineAnnealingLR.T_max 24 -> 4)']


@pytest.mark.parametrize('options', [{'train_cfg.max_epochs': 24},
                                     {'train_cfg.max_epochs': 4, 'param_scheduler.1.end': 6}])
def test_the_written_schedule_stays_unless_only_the_length_changes(options) -> None:
    args = argparse.Namespace(config=str(DEMO), launcher='none', local_rank=0, work_dir=None,
                              cfg_options=options)
    cosine = load_tool_config(args).param_scheduler[1]
    assert cosine.T_max == 24 and cosine.end == options.get('param_scheduler.1.end', 24)


def test_milestones_and_iteration_schedules_scale_in_whole_units() -> None:
    cfg = Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=1000),
                      param_scheduler=[
                          dict(type='MultiStepLR', by_epoch=False, milestones=[600, 900]),
                          dict(type='LinearLR', by_epoch=False, begin=0, end=1),
                          dict(type='StepLR', by_epoch=True, step_size=3)]))
    written = schedule_length(cfg)
    cfg.train_cfg.max_iters = 100
    follow_schedule_length(cfg, written)
    multistep, linear, epochs = cfg.param_scheduler
    assert multistep.milestones == [60, 90]
    assert (linear.begin, linear.end) == (0, 1)  # a count stays at least 1
    assert epochs.step_size == 3  # in epochs: not the loop's unit


class Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(index)


def test_the_loops_dataloader_workers_are_stopped_before_the_runner_goes() -> None:
    persistent = torch.utils.data.DataLoader(Numbers(), batch_size=2, num_workers=1,
                                             persistent_workers=True)
    next(iter(persistent))  # the loader keeps this iterator and its worker
    infinite = _InfiniteDataloaderIterator(
        torch.utils.data.DataLoader(Numbers(), batch_size=2, num_workers=1))
    next(infinite)
    workers = persistent._iterator._workers + infinite._iterator._workers
    assert all(worker.is_alive() for worker in workers)
    runner = SimpleNamespace(_train_loop=SimpleNamespace(dataloader_iterator=infinite),
                             _val_loop=SimpleNamespace(dataloader=persistent),
                             _test_loop=dict(type='TestLoop'))  # not built
    stop_loader_workers(runner)
    assert persistent._iterator is None
    assert not any(worker.is_alive() for worker in workers)
