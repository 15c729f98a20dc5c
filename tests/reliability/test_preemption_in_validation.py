"""SIGTERM during the per-configuration validation: saved within a configuration, resumed.

The demo Mask R-CNN config at 64 px (see test_resume.py), deterministic, 2 epochs of 2
iterations, validated after each epoch on a grid of 3 configurations (2 BN calibration
batches each; the validation and calibration loaders have a worker each). The signal
comes from a hook inside the run (sigterm_in_validation.py) at a fixed point of the
first validation, so no test depends on timing.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.reliability.checkpoint_hook import PREEMPTED_EXIT_CODE, VALIDATION_PENDING

from .test_preemption import assert_same_training
from .tiny_detection import REPO, SCHEDULE, free_port, run_tool, tool_env, write_config

pytestmark = [pytest.mark.xdist_group('multiprocess'), pytest.mark.slow]  # see test_preemption.py

GRID = 3
VALIDATED = SCHEDULE + '''
custom_imports = dict(imports=['mutualnet_mm', 'tests.reliability.sigterm_in_validation'])
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
val_cfg = dict(widths=(1.0, 0.5, 0.25), scales=(1.0,), calibration=dict(num_batches=2))
# Fresh training workers each epoch: a run resumed between epochs is then exact (README).
train_dataloader = dict(persistent_workers=False)
default_hooks = dict(checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
'''
# Logged once per configuration evaluated.
EVALUATED = "the evaluator's summary follows"


def with_sigterm(after_iter: int, **where) -> str:
    """``VALIDATED`` plus a hook sending SIGTERM in the validation after ``after_iter``."""
    args = ', '.join(f'{key}={value!r}' for key, value in where.items())
    return VALIDATED + (f"custom_hooks = [dict(type='SigtermInValidation', "
                        f"after_iter={after_iter}, {args})]\n")


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('preemption_in_validation') / 'data'
    generate_coco_shapes(root, num_train=4, num_val=2, image_size=64)
    return root


def launch(command: list, log_path: Path, env: dict) -> int:
    """Run ``command`` in a session of its own (the hook may signal its whole process
    group), its output to ``log_path``; its exit status, once no process of it is left."""
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=240)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    with pytest.raises(ProcessLookupError):  # no dataloader worker left behind
        os.killpg(process.pid, 0)
    return process.returncode


def interrupted(data_root: Path, name: str, extra: str) -> tuple:
    """Train ``name`` with ``extra`` (a SIGTERM) until it stops: config, work dir, log."""
    config = write_config(data_root.parent / f'{name}.py', data_root, extra, flip=0.0,
                          validation=True)
    work_dir = data_root.parent / name
    log_path = data_root.parent / f'{name}.log'
    status = launch([sys.executable, str(REPO / 'tools/train.py'), str(config),
                     '--work-dir', str(work_dir)], log_path, tool_env())
    log = log_path.read_text()
    assert status == PREEMPTED_EXIT_CODE, log[-3000:]
    assert (f'resume with: python tools/train.py {config} --work-dir {work_dir} --resume'
            in log)
    return config, work_dir, log


def assert_validation_pending(work_dir: Path, iteration: int) -> dict:
    """``last_checkpoint`` names a checkpoint after ``iteration``, its validation pending."""
    checkpoint = (work_dir / 'last_checkpoint').read_text()
    assert checkpoint.endswith(f'iter_{iteration}.pth')
    loaded = torch.load(checkpoint, weights_only=True)
    assert loaded['meta']['iter'] == iteration and loaded['meta'][VALIDATION_PENDING]
    return loaded


@pytest.mark.parametrize('to', ['process', 'group'], ids=['main-process', 'process-group'])
def test_sigterm_in_an_evaluation_stops_before_the_next_configuration(data_root, to):
    """SIGTERM as configuration 2 is evaluated: to the main process (Kubernetes), or to
    it and the loaders' workers (Slurm)."""
    _, work_dir, log = interrupted(data_root, f'evaluation_{to}',
                                   with_sigterm(2, configuration=2, to=to))
    assert ('stopped by SIGTERM during the validation after iteration 2 (before '
            f'configuration 3/{GRID}; the resumed run validates again)') in log
    assert log.count(EVALUATED) == 2 < GRID
    assert 'Epoch(train) [2]' not in log
    assert_validation_pending(work_dir, 2)


@pytest.fixture(scope='module')
def uninterrupted(data_root: Path) -> tuple:
    """The last checkpoint and validation results of an uninterrupted run."""
    config = write_config(data_root.parent / 'validated.py', data_root, VALIDATED, flip=0.0,
                          validation=True)
    work_dir = data_root.parent / 'validated'
    run_tool(['train.py', config, '--work-dir', work_dir])
    return (torch.load(work_dir / 'epoch_2.pth', weights_only=True),
            (work_dir / 'per_config.json').read_text())


def test_sigterm_to_the_process_group_in_calibration_then_resume_validates_again(
        data_root, uninterrupted):
    """SIGTERM to every process after the first calibration batch of configuration 2,
    when the calibration loader's and the validation loader's workers run; then
    ``--resume``: that validation again, from its first configuration, and the rest of
    the training, ending as the uninterrupted run ends."""
    config, work_dir, log = interrupted(
        data_root, 'calibration_group',
        with_sigterm(2, configuration=2, calibration_batch=0, to='group'))
    assert ('stopped by SIGTERM during the validation after iteration 2 (in the BN '
            f'calibration of configuration 2/{GRID}, after batch 1;') in log
    assert log.count(EVALUATED) == 1
    assert_validation_pending(work_dir, 2)

    resumed = run_tool(['train.py', config, '--work-dir', work_dir, '--resume'])
    log = resumed.stdout + resumed.stderr
    assert 'resumed epoch: 1, iter: 2' in log
    again = log.index('interrupted the validation after iteration 2: validating again')
    assert log.count(EVALUATED, again, log.index('Epoch(train) [2][1/2]')) == GRID
    assert log.count(EVALUATED) == 2 * GRID  # and the validation after epoch 2
    final, results = uninterrupted
    assert_same_training(torch.load(work_dir / 'epoch_2.pth', weights_only=True), final)
    assert (work_dir / 'per_config.json').read_text() == results


@pytest.mark.parametrize('to', ['process', 'launcher'], ids=['rank-1', 'job'])
def test_sigterm_in_ddp_validation_stops_every_rank_and_dist_train_exits_143(data_root, to):
    """2 CPU processes (``dist_train.sh``), SIGTERM in the calibration of configuration 2:
    to rank 1 alone, or to it, torchrun and the script (Slurm: every process of the job;
    torchrun passes it on to every rank). Every rank stops at rank 1's point, and the
    script exits 143."""
    # 4 training images on 2 ranks: 1 iteration per epoch.
    config = write_config(
        data_root.parent / f'ddp_validation_{to}.py', data_root,
        with_sigterm(1, configuration=2, calibration_batch=0, rank=1, to=to)
        + 'env_cfg = dict(dist_cfg=dict(timeout=120))\n', flip=0.0, validation=True)
    work_dir = data_root.parent / f'ddp_validation_{to}'
    log_path = data_root.parent / f'ddp_validation_{to}.log'
    status = launch(['bash', str(REPO / 'tools/dist_train.sh'), str(config), '2',
                     '--work-dir', str(work_dir)], log_path,
                    tool_env(PORT=str(free_port()), MASTER_ADDR='127.0.0.1'))
    log = log_path.read_text()
    assert status == PREEMPTED_EXIT_CODE, log[-3000:]
    # Rank 0 (which logs), not signalled, saved and stopped with rank 1.
    assert ('stopped by SIGTERM during the validation after iteration 1 (in the BN '
            f'calibration of configuration 2/{GRID}, after batch 1;') in log
    assert (f'resume with: python tools/train.py {config} --work-dir {work_dir} --resume '
            f'(under the same launcher: tools/dist_train.sh {config} 2') in log
    assert log.count(EVALUATED) == 1
    assert_validation_pending(work_dir, 1)
