"""SafeCheckpointHook: the stock hook's files, saved atomically, no foreign file removed."""
import errno
import importlib.util
import os
import signal
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mutualnet_mm  # noqa: F401  (registers SafeCheckpointHook)

from .test_checkpoint import TinyDataset, TinyRegressor

_TOOL = Path(__file__).parents[2] / 'tools' / 'train.py'
_spec = importlib.util.spec_from_file_location('train_tool', _TOOL)
train_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_tool)


class ValidatedRegressor(TinyRegressor):
    """The tiny regressor, with predictions for validation."""

    def forward(self, inputs, targets=None, mode='loss'):
        if mode == 'loss':
            return super().forward(inputs, targets)
        return list(self.linear(inputs).squeeze(1))


class RisingScore(BaseMetric):
    """A validation metric that improves at every evaluation."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results: list) -> dict:
        self.calls += 1
        return {'acc': float(self.calls)}


class FilesAtSave(Hook):
    """Records the checkpoint files on disk when each checkpoint is about to be written."""

    def __init__(self) -> None:
        self.seen: List[List[str]] = []

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.seen.append(sorted(p.name for p in Path(runner.work_dir).glob('*.pth')
                                if not p.name.startswith('.')))  # not the temporary


def make_runner(work_dir: Path, hook: dict, max_iters: int = 4, resume: bool = False,
                hooks=()) -> Runner:
    """The tiny regressor, 2 iterations per epoch, validated every 2 iterations."""
    by_epoch = hook.get('by_epoch', True)
    train_cfg = (dict(by_epoch=True, max_epochs=max_iters // 2, val_interval=1) if by_epoch
                 else dict(by_epoch=False, max_iters=max_iters, val_interval=2))
    # A name of its own: mmengine's message hubs are global, one per experiment name.
    name = f'{work_dir.parent.name}-{work_dir.name}-{resume}'
    return Runner(
        model=ValidatedRegressor(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=TinyDataset(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        val_dataloader=dict(dataset=TinyDataset(), batch_size=4,
                            sampler=dict(type='DefaultSampler', shuffle=False),
                            collate_fn=dict(type='default_collate')),
        val_evaluator=[RisingScore()], val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=train_cfg, default_hooks=dict(checkpoint=hook), custom_hooks=list(hooks),
        resume=resume, randomness=dict(seed=0), default_scope=None)


def checkpoint_files(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and
                  p.suffix == '.pth' or p.name == 'last_checkpoint')


@pytest.mark.parametrize('args', [
    dict(interval=1, by_epoch=False, max_keep_ckpts=2),
    dict(interval=1, max_keep_ckpts=1, save_best='acc', rule='greater'),
    dict(interval=2, by_epoch=False, save_best='auto', max_keep_ckpts=1),
    dict(interval=1, by_epoch=False, filename_tmpl='step{}.pth', save_last=False,
         max_keep_ckpts=3),
    dict(interval=3, by_epoch=False, save_last=False),
], ids=['iter-keep2', 'epoch-best', 'iter-best-auto', 'template', 'no-last'])
@pytest.mark.slow
def test_same_files_as_the_stock_hook(tmp_path, args):
    for name in ('CheckpointHook', 'SafeCheckpointHook'):
        make_runner(tmp_path / name, dict(type=name, **args)).train()
    stock, safe = tmp_path / 'CheckpointHook', tmp_path / 'SafeCheckpointHook'
    assert checkpoint_files(safe) == checkpoint_files(stock)
    assert (safe / 'last_checkpoint').read_text() == str(safe / (
        stock / 'last_checkpoint').read_text().rsplit('/', 1)[1])


def test_out_dir_is_used(tmp_path):
    make_runner(tmp_path / 'work', dict(type='SafeCheckpointHook', interval=1,
                                        out_dir=str(tmp_path / 'out'))).train()
    assert sorted(p.name for p in (tmp_path / 'out/work').iterdir()) == [
        'epoch_1.pth', 'epoch_2.pth']
    assert (tmp_path / 'work/last_checkpoint').read_text() == str(
        tmp_path / 'out/work/epoch_2.pth')


def test_old_checkpoint_removed_only_after_the_new_one(tmp_path):
    files = FilesAtSave()
    make_runner(tmp_path, dict(type='SafeCheckpointHook', interval=1, by_epoch=False,
                               max_keep_ckpts=1), hooks=[files]).train()
    # When iter_N is written, iter_{N-1} is still there (the stock hook has removed it).
    assert files.seen == [[], ['iter_1.pth'], ['iter_2.pth'], ['iter_3.pth']]
    assert checkpoint_files(tmp_path) == ['iter_4.pth', 'last_checkpoint']


def test_runtime_info_cannot_name_files_outside_the_work_dir(tmp_path):
    work_dir = tmp_path / 'work'
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=1,
                save_best='acc', rule='greater')
    make_runner(work_dir, hook, max_iters=2).train()
    victim = tmp_path / 'victim.pth'
    victim.write_text('not a checkpoint of this run')
    (work_dir / 'iter_x').mkdir()  # iter_{x/../../victim}.pth is tmp_path/victim.pth
    crafted = torch.load(work_dir / 'iter_2.pth', weights_only=True)
    crafted['message_hub']['runtime_info'].update(
        best_ckpt=str(victim), best_score=-1.0, last_ckpt=str(victim),
        keep_ckpt_ids=['x/../../victim', 1, 2])
    torch.save(crafted, work_dir / 'iter_2.pth')

    runner = make_runner(work_dir, hook, resume=True)
    runner.train()
    assert victim.read_text() == 'not a checkpoint of this run'
    log = (work_dir / runner.timestamp / f'{runner.timestamp}.log').read_text()
    assert f"ignoring best_ckpt '{victim}'" in log
    assert f"ignoring last_ckpt '{victim}'" in log
    assert "ignoring keep_ckpt_ids ['x/../../victim', 1, 2]" in log
    assert f'only regular files inside {work_dir} named as this hook names checkpoints' in log
    assert (work_dir / 'best_acc_iter_4.pth').is_file()


@pytest.mark.parametrize('kind', ['directory', 'user file'])
def test_runtime_info_naming_anything_but_a_checkpoint_is_ignored(tmp_path, kind):
    work_dir = tmp_path / 'work'
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=1,
                save_best='acc', rule='greater')
    make_runner(work_dir, hook, max_iters=2).train()
    if kind == 'directory':
        kept = work_dir / 'data'
        kept.mkdir()
        (kept / 'images.txt').write_text('a user\'s data')
    else:
        kept = work_dir / 'notes.pth'
        kept.write_text('a user\'s notes')
    crafted = torch.load(work_dir / 'iter_2.pth', weights_only=True)
    crafted['message_hub']['runtime_info'].update(best_ckpt=str(kept), best_score=-1.0)
    torch.save(crafted, work_dir / 'iter_2.pth')

    runner = make_runner(work_dir, hook, resume=True)
    runner.train()  # a new best at iterations 3 and 4: the previous best is removed
    assert kept.exists() and (kind == 'user file' or (kept / 'images.txt').is_file())
    log = (work_dir / runner.timestamp / f'{runner.timestamp}.log').read_text()
    assert f"ignoring best_ckpt '{kept}' of the resumed checkpoint" in log
    assert (work_dir / 'best_acc_iter_4.pth').is_file()


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    put = LocalBackend.put

    def fill_disk(self, obj: bytes, filepath) -> None:
        if str(filepath).endswith(f'.iter_2.pth.{os.getpid()}.tmp.pth'):
            with open(filepath, 'wb') as f:
                f.write(obj[:100])
            raise OSError(errno.ENOSPC, 'No space left on device')
        put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', fill_disk)
    runner = make_runner(tmp_path, dict(type='SafeCheckpointHook', interval=1, by_epoch=False,
                                        max_keep_ckpts=1))
    with pytest.raises(OSError) as error:
        runner.train()
    assert error.value.errno == errno.ENOSPC
    message = str(error.value)
    assert f'could not save checkpoint iter_2.pth in {tmp_path}: No space left' in message
    print(message)
    assert 'MiB free, the previous checkpoint' in message and 'iter_1.pth takes' in message
    assert message.endswith(f'last_checkpoint still names {tmp_path / "iter_1.pth"}')
    assert checkpoint_files(tmp_path) == ['iter_1.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1


DEAD_PID = 99999999  # above any pid_max: no such process


def test_only_our_leftover_temporaries_are_removed(tmp_path):
    work_dir, victim = tmp_path / 'work', tmp_path / 'victim.pth'
    work_dir.mkdir()
    victim.write_text('not a checkpoint of this run')
    leftovers = [work_dir / f'.iter_7.pth.{DEAD_PID}.tmp.pth',
                 work_dir / f'.last_checkpoint.{DEAD_PID}.tmp']
    kept = [work_dir / 'notes.saving', work_dir / f'.notes.txt.{DEAD_PID}.tmp.txt',
            work_dir / 'iter_7.pth.saving']
    for path in leftovers + kept:
        path.write_bytes(b'half a checkpoint')
    (work_dir / 'outputs.saving').mkdir()  # a directory stopped every start
    link = work_dir / f'.iter_9.pth.{DEAD_PID}.tmp.pth'
    link.symlink_to(victim)
    make_runner(work_dir, dict(type='SafeCheckpointHook', interval=2, by_epoch=False)).train()
    assert not any(p.exists() for p in leftovers)
    assert all(p.read_bytes() == b'half a checkpoint' for p in kept)
    assert (work_dir / 'outputs.saving').is_dir() and link.is_symlink()
    assert victim.read_text() == 'not a checkpoint of this run'
    assert os.path.isfile(work_dir / 'iter_4.pth')


def test_a_link_at_the_temporary_name_is_never_written_through(tmp_path):
    work_dir, victim = tmp_path / 'work', tmp_path / 'victim.pth'
    work_dir.mkdir()
    victim.write_text('not a checkpoint of this run')
    link = work_dir / f'.iter_2.pth.{os.getpid()}.tmp.pth'
    link.symlink_to(victim)
    runner = make_runner(work_dir, dict(type='SafeCheckpointHook', interval=2,
                                        by_epoch=False))
    with pytest.raises(FileExistsError, match=f"'{link}' exists and is not a regular file"):
        runner.train()
    assert victim.read_text() == 'not a checkpoint of this run' and link.is_symlink()
    assert not (work_dir / 'iter_2.pth').exists()


def test_train_tool_swaps_the_stock_hook_keeping_its_arguments():
    cfg = Config(dict(
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, save_best='auto')),
        custom_hooks=[dict(type='mmengine.CheckpointHook', by_epoch=False),
                      dict(type='EMAHook')]))
    train_tool.use_safe_checkpoint_hook(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='SafeCheckpointHook', interval=3,
                                                save_best='auto')
    assert cfg.custom_hooks == [dict(type='SafeCheckpointHook', by_epoch=False),
                                dict(type='EMAHook')]


def test_sigterm_handler_is_restored_after_training(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    class SeeHandler(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            seen.append(signal.getsignal(signal.SIGTERM))

    make_runner(tmp_path, dict(type='SafeCheckpointHook', interval=2), hooks=[SeeHandler()]
                ).train()
    assert seen and all(handler != before for handler in seen)
    assert signal.getsignal(signal.SIGTERM) == before
