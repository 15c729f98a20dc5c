"""SIGTERM (preemption) and SIGKILL inside a checkpoint save: the run goes on where it was.

The demo Mask R-CNN config at 64 px (see test_resume.py), deterministic, 2 epochs of 2
iterations; the single-process runs are compared with one uninterrupted run. Under DDP
(2 CPU processes) only rank 1 gets the SIGTERM and every rank stops.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.reliability.checkpoint_hook import PREEMPTED_EXIT_CODE

from .test_resume import max_difference
from .tiny_detection import ITERATIONS, REPO, SCHEDULE, free_port, run_tool, tool_env, write_config

# Meant to keep the multi-process tests on one xdist worker (make test: --dist
# loadgroup); pytest-xdist 3.8 may still run these modules on both workers at once, so
# each must be safe beside the others (file stores or ports from free_port()).
pytestmark = [pytest.mark.xdist_group('multiprocess'), pytest.mark.slow]

# The demo's checkpoints: one, at the end of training.
BY_EPOCH = "default_hooks = dict(checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))\n"
# A checkpoint after every iteration, only the latest kept; killed while saving iter_2.
KILLED_IN_SAVE = '''
custom_imports = dict(imports=['mutualnet_mm', 'tests.reliability.save_window_kill'])
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1, max_keep_ckpts=1))
custom_hooks = [dict(type='KillBeforeCheckpointWrite', at_iter=2)]
'''
# Two processes (gloo), an iteration-based loop, no dataloader workers; SIGTERM to rank 1.
DDP = '''
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(_delete_=True, type='MutualIterBasedTrainLoop', max_iters=4,
                 mutual=dict(scales=(1.0, 0.75, 0.5)))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4))
env_cfg = dict(dist_cfg=dict(timeout=120))  # a rank left waiting fails in 2 minutes
'''
TOLERANCE = 1e-6  # measured: 0.0 (bit-identical)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('preemption') / 'data'
    generate_coco_shapes(root, num_train=4, num_val=2, image_size=64)
    return root


@pytest.fixture(scope='module')
def uninterrupted(data_root: Path) -> dict:
    """The last checkpoint of an uninterrupted run."""
    config = write_config(data_root.parent / 'uninterrupted.py', data_root, SCHEDULE + BY_EPOCH)
    work_dir = data_root.parent / 'uninterrupted'
    run_tool(['train.py', config, '--work-dir', work_dir])
    return torch.load(work_dir / f'epoch_{ITERATIONS // 2}.pth', weights_only=True)


def assert_same_training(final: dict, expected: dict, schedulers: bool = True) -> None:
    """Same iteration, seed, weights, optimizer state and (``schedulers``) schedulers.

    (Not the epoch and, with ``schedulers=False``, not the schedulers: a checkpoint saved
    after the last iteration records the epoch in progress and the epoch-based scheduler
    before its end-of-epoch step; one saved after the epoch, both after.)
    """
    for key in ('iter', 'seed'):
        assert final['meta'][key] == expected['meta'][key], key
    differences = dict(
        weights=max_difference(final['state_dict'], expected['state_dict']),
        optimizer=max_difference(final['optimizer'], expected['optimizer']))
    if schedulers:
        differences['schedulers'] = max_difference(final['param_schedulers'],
                                                   expected['param_schedulers'])
    print('resumed vs uninterrupted:', differences)
    assert max(differences.values()) <= TOLERANCE


def wait_for_line(log_path: Path, text: str, process: subprocess.Popen,
                  timeout: float = 180) -> None:
    """Poll the log until it has ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_path.read_text():
            return
        if process.poll() is not None:
            pytest.fail(f'training ended ({process.returncode}) before logging {text!r}')
        time.sleep(0.05)
    pytest.fail(f'no {text!r} in {log_path} after {timeout} s')


@pytest.mark.parametrize('group', [False, True], ids=['main-process', 'process-group'])
def test_sigterm_saves_logs_the_command_and_resumes_exactly(data_root, uninterrupted, group):
    """SIGTERM to the main process (Kubernetes), or to it and its dataloader worker (Slurm)."""
    name = f'sigterm_{"group" if group else "main"}'
    config = write_config(data_root.parent / f'{name}.py', data_root, SCHEDULE + BY_EPOCH)
    work_dir = data_root.parent / name
    log_path = data_root.parent / f'{name}.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen([sys.executable, str(REPO / 'tools/train.py'), str(config),
                                    '--work-dir', str(work_dir)], cwd=REPO, env=tool_env(),
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_for_line(log_path, 'Epoch(train) [1][1/2]', process)
            if group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=180)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    log = log_path.read_text()
    assert process.returncode == PREEMPTED_EXIT_CODE, log[-3000:]
    assert (f'resume with: python tools/train.py {config} --work-dir {work_dir} --resume'
            in log)
    checkpoint = (work_dir / 'last_checkpoint').read_text()
    start = torch.load(checkpoint, weights_only=True)['meta']
    assert 1 <= start['iter'] < ITERATIONS, f'stopped too late: {start}'
    assert checkpoint.endswith(f'iter_{start["iter"]}.pth')

    resumed = run_tool(['train.py', config, '--work-dir', work_dir, '--resume'])
    assert f'resumed epoch: {start["epoch"]}, iter: {start["iter"]}' in (
        resumed.stdout + resumed.stderr)
    final = torch.load(work_dir / f'epoch_{ITERATIONS // 2}.pth', weights_only=True)
    assert_same_training(final, uninterrupted)


def test_sigkill_inside_a_checkpoint_save_resumes_from_the_previous_one(data_root,
                                                                       uninterrupted):
    config = write_config(data_root.parent / 'killed.py', data_root, SCHEDULE + KILLED_IN_SAVE)
    work_dir = data_root.parent / 'killed'
    killed = subprocess.run([sys.executable, str(REPO / 'tools/train.py'), str(config),
                             '--work-dir', str(work_dir)], cwd=REPO, env=tool_env(),
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_1.pth')

    resumed = run_tool(['train.py', config, '--work-dir', work_dir, '--resume'])
    assert 'resumed epoch: 0, iter: 1' in resumed.stdout + resumed.stderr
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [f'iter_{ITERATIONS}.pth']
    final = torch.load(work_dir / f'iter_{ITERATIONS}.pth', weights_only=True)
    assert_same_training(final, uninterrupted, schedulers=False)



def find_rank(marker: str, rank: int, process: subprocess.Popen, timeout: float = 180) -> int:
    """The pid of the training process of ``rank`` whose environment holds ``marker``."""
    wanted = {marker.encode(), f'RANK={rank}'.encode()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path('/proc').iterdir():
            try:
                if entry.name.isdigit() and wanted <= set(
                        (entry / 'environ').read_bytes().split(b'\0')):
                    return int(entry.name)
            except OSError:  # gone, or not ours
                continue
        if process.poll() is not None:
            pytest.fail(f'training ended ({process.returncode}) before rank {rank} started')
        time.sleep(0.1)
    pytest.fail(f'no rank {rank} after {timeout} s')


def test_sigterm_to_one_ddp_rank_stops_every_rank_at_the_same_iteration(data_root):
    config = write_config(data_root.parent / 'ddp.py', data_root, DDP, flip=0.0)
    work_dir = data_root.parent / 'ddp'
    log_path = data_root.parent / 'ddp.log'
    marker = f'MUTUALNET_PREEMPTION_TEST={work_dir}'
    env = dict(tool_env(PORT=str(free_port()), MASTER_ADDR='127.0.0.1'),
               MUTUALNET_PREEMPTION_TEST=str(work_dir))
    with open(log_path, 'w') as log:
        process = subprocess.Popen(['bash', str(REPO / 'tools/dist_train.sh'), str(config), '2',
                                    '--work-dir', str(work_dir)], cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            rank1 = find_rank(marker, 1, process)
            wait_for_line(log_path, 'Epoch(train) [1][1/2]', process)
            os.kill(rank1, signal.SIGTERM)
            process.wait(timeout=240)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    log = log_path.read_text()
    assert process.returncode == PREEMPTED_EXIT_CODE, log[-3000:]
    checkpoint = (work_dir / 'last_checkpoint').read_text()
    start = torch.load(checkpoint, weights_only=True)['meta']
    assert 1 <= start['iter'] < 4, f'stopped too late: {start}'
    # Rank 0 (which logs), not signalled, saved and stopped after rank 1's SIGTERM.
    assert f'SIGTERM: saving iter_{start["iter"]}.pth' in log
    assert (f'resume with: python tools/train.py {config} --work-dir {work_dir} --resume '
            f'(under the same launcher: tools/dist_train.sh {config} 2') in log

    resumed = run_tool(['dist_train.sh', config, 2, '--work-dir', work_dir, '--resume'],
                       port=free_port())
    assert f'resumed epoch: 0, iter: {start["iter"]}' in resumed.stdout + resumed.stderr
    assert torch.load(work_dir / 'iter_4.pth', weights_only=True)['meta']['iter'] == 4
