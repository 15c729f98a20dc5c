"""tools/dist_train.sh and tools/dist_test.sh with 2 CPU processes (torchrun, gloo); slurm.

Training runs 4 mutual iterations in 2 processes (the full configuration alone in the
first 3: the ETA's trial cohort steps, undone, run at the second); the per-configuration
evaluation of its checkpoint in 2 processes gives the table one process gives. Each
process calibrates batch norms on its half of the training images and the statistics are
averaged, so the table only matches if the averaging is right (a :class:`PredictionDigest`
of the raw predictions makes the comparison sensitive where the mAP of so short a
training says little).
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from mutualnet_mm.datasets import generate_coco_shapes

from .tiny_detection import REPO, free_port, run_tool, tool_env, write_config

# Meant to keep the multi-process tests on one xdist worker (make test: --dist
# loadgroup); pytest-xdist 3.8 may still run these modules on both workers at once, so
# each must be safe beside the others (file stores or ports from free_port()).
pytestmark = [pytest.mark.xdist_group('multiprocess'), pytest.mark.slow]

EXTRA = '''
custom_imports = dict(imports=['mutualnet_mm', 'tests.reliability.digest_metric'],
                      allow_failed_imports=False)
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(_delete_=True, type='MutualIterBasedTrainLoop', max_iters=4,
                 mutual=dict(scales=(1.0, 0.75, 0.5), full_only_iters=3))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False)
test_evaluator = [
    dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
         metric='bbox'),
    dict(type='PredictionDigest'),
]
test_cfg = dict(widths=(1.0, 0.5), scales=(1.0, 0.75), calibration=dict(num_batches=100))
'''
# Calibrate on every training image, one per batch, in order (num_batches=100 exceeds
# them): one process takes 4 batches, each of 2 processes 2.
CALIBRATION_LOADER = ['train_dataloader.batch_size=1',
                      'train_dataloader.sampler.type=DefaultSampler',
                      'train_dataloader.sampler.shuffle=False']
RELATIVE_TOLERANCE = 1e-5  # measured: about 1e-7



@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp('dist_tools')
    generate_coco_shapes(root / 'data', num_train=4, num_val=2, image_size=64)
    config = write_config(root / 'config.py', root / 'data', EXTRA, flip=0.0)
    result = run_tool(['dist_train.sh', config, 2, '--work-dir', root / 'train'],
                      port=free_port())
    return config, root / 'train' / 'iter_4.pth', result.stdout + result.stderr


def test_dist_train_runs_two_processes(trained) -> None:
    _, checkpoint, log = trained
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # world size
    assert "type='MMDistributedDataParallel'" in log
    assert 'ETA: a cohort iteration' in log  # the trial steps ran on both ranks
    assert checkpoint.is_file()


def evaluate(config: Path, checkpoint: Path, work_dir: Path, processes: int) -> list:
    args = [config, checkpoint, '--work-dir', work_dir, '--cfg-options', *CALIBRATION_LOADER]
    if processes == 1:
        run_tool(['test.py', *args])
    else:
        run_tool(['dist_test.sh', config, checkpoint, processes, *args[2:]], port=free_port())
    return json.loads((work_dir / 'per_config.json').read_text())['records']


def test_per_config_table_is_the_same_with_one_and_two_processes(trained, tmp_path) -> None:
    config, checkpoint, _ = trained
    single = evaluate(config, checkpoint, tmp_path / 'one', 1)
    double = evaluate(config, checkpoint, tmp_path / 'two', 2)
    assert [r['name'] for r in single] == [r['name'] for r in double]
    assert len(single) == 4
    worst = 0.0
    for one, two in zip(single, double):
        assert one.keys() == two.keys()
        assert one['digest/num_images'] == two['digest/num_images'] == 2
        for key, value in one.items():
            if key.startswith('digest/') and isinstance(value, float):
                worst = max(worst, abs(value - two[key]) / max(abs(value), 1e-12))
            else:
                assert value == two[key], (one['name'], key)
    # The digests tell the configurations apart (the comparison is not vacuous).
    assert len({r['digest/score_sum'] for r in single}) == len(single)
    print(f'max relative difference of the prediction digests, 1 vs 2 processes: {worst:.3g}')
    assert worst <= RELATIVE_TOLERANCE


@pytest.mark.parametrize('script, positional, tool', [
    ('slurm_train.sh', ['work dir'], ['tools/train.py', 'my config.py', '--work-dir=work dir']),
    ('slurm_test.sh', ['ckpt.pth'], ['tools/test.py', 'my config.py', 'ckpt.pth']),
])
def test_slurm_scripts_hand_the_job_to_srun(tmp_path: Path, script: str, positional: list,
                                           tool: list) -> None:
    # No Slurm here: a stand-in srun records the command line it is given.
    record = tmp_path / 'srun_args'
    fake = tmp_path / 'bin' / 'srun'
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{record}"\n')
    fake.chmod(0o755)
    env = dict(tool_env(), GPUS='4', SRUN_ARGS='--quotatype=auto',
               PATH=f'{fake.parent}{os.pathsep}{os.environ["PATH"]}')
    subprocess.run(['bash', f'tools/{script}', 'gpu', 'job', 'my config.py', *positional,
                    '--cfg-options', 'a=1 2'], cwd=REPO, env=env, check=True)
    assert record.read_text().splitlines() == [
        '-p', 'gpu', '--job-name=job', '--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '--quotatype=auto', 'python', '-u',
        *tool, '--launcher=slurm', '--cfg-options', 'a=1 2']
