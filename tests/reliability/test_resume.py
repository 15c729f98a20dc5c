"""SIGKILL a training run mid-epoch, resume it: it ends where an uninterrupted run ends.

The demo Mask R-CNN config at 64 px with its data settings (one persistent dataloader
worker, random flips), deterministic; 2 epochs of 2 iterations, a checkpoint after every
iteration. The killed run is resumed (``tools/train.py --resume``) from its last
checkpoint, in the middle of the first epoch.
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

from .tiny_detection import ITERATIONS, REPO, SCHEDULE, run_tool, tool_env, write_config

# Runs the tools or trainings in processes: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow

# A checkpoint after every iteration.
EVERY_ITERATION = SCHEDULE + ('default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1, '
                               'max_keep_ckpts=10))\n')
TOLERANCE = 1e-6  # measured: 0.0 (bit-identical)


@pytest.fixture(scope='module')
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('resume')
    generate_coco_shapes(root / 'data', num_train=4, num_val=2, image_size=64)
    return write_config(root / 'config.py', root / 'data', EVERY_ITERATION)


def first_checkpoint(work_dir: Path, process: subprocess.Popen, timeout: float = 180) -> str:
    """Poll for ``last_checkpoint`` (written after a checkpoint is complete)."""
    marker = work_dir / 'last_checkpoint'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return marker.read_text().strip()
        if process.poll() is not None:
            pytest.fail(f'training ended ({process.returncode}) before its first checkpoint')
        time.sleep(0.05)
    pytest.fail(f'no checkpoint in {work_dir} after {timeout} s')


def max_difference(a, b) -> float:
    """Largest absolute difference between two nested structures of tensors and numbers."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max([max_difference(a[k], b[k]) for k in a], default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max([max_difference(x, y) for x, y in zip(a, b)], default=0.0)
    if isinstance(a, torch.Tensor):
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    if isinstance(a, (int, float)):
        return abs(a - b)
    assert a == b
    return 0.0


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(config: Path) -> None:
    reference_dir = config.parent / 'uninterrupted'
    run_tool(['train.py', config, '--work-dir', reference_dir])

    work_dir = config.parent / 'killed'
    with open(config.parent / 'killed.log', 'w') as log:
        process = subprocess.Popen([sys.executable, str(REPO / 'tools/train.py'), str(config),
                                    '--work-dir', str(work_dir)], cwd=REPO, env=tool_env(),
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its dataloader worker too
        try:
            checkpoint = first_checkpoint(work_dir, process)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (work_dir / f'iter_{ITERATIONS}.pth').exists(), 'killed too late'
    start = torch.load(checkpoint, weights_only=True)['meta']
    assert start['iter'] % 2 == 1, f'not a mid-epoch checkpoint: {start}'

    resumed = run_tool(['train.py', config, '--work-dir', work_dir, '--resume'])
    log = resumed.stdout + resumed.stderr
    assert f'resumed epoch: {start["epoch"]}, iter: {start["iter"]}' in log
    assert not (work_dir / f'iter_{ITERATIONS + 1}.pth').exists()

    final = torch.load(work_dir / f'iter_{ITERATIONS}.pth', weights_only=True)
    expected = torch.load(reference_dir / f'iter_{ITERATIONS}.pth', weights_only=True)
    first = torch.load(reference_dir / 'iter_1.pth', weights_only=True)
    assert max_difference(first['state_dict'], expected['state_dict']) > 1e-3  # it trains
    for key in ('epoch', 'iter', 'seed'):
        assert final['meta'][key] == expected['meta'][key], key
    weights = max_difference(final['state_dict'], expected['state_dict'])
    optimizer = max_difference(final['optimizer'], expected['optimizer'])
    schedulers = max_difference(final['param_schedulers'], expected['param_schedulers'])
    print(f'resumed vs uninterrupted: weights {weights:.3g}, optimizer {optimizer:.3g}, '
          f'schedulers {schedulers:.3g}')
    assert max(weights, optimizer, schedulers) <= TOLERANCE
