"""Every entry point that reads a checkpoint refuses one that carries a crafted numpy object.

The payload (a float64 dtype whose pickled state claims object items) breaks numpy inside
(or crashes the process) when numpy's own constructors are allow-listed; here each tool, mmengine's
``resume`` / ``load_from`` / ``init_cfg`` and the inferencer must refuse it, naming
the file. Tools run in this process (their ``main``), on the tiny demo config.
"""
import pickle
import runpy
import sys
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.config import Config

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.deploy import AdaptiveInferencer, build_adaptive_model
from mutualnet_mm.evaluation import QueryTable
from mutualnet_mm.reliability.fingerprint import weights_fingerprint

from . import checkpoint_payloads as payloads
from .tiny_detection import REPO, write_config

# Runs the tools or trainings in processes: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('entry_points')
    generate_coco_shapes(root / 'data', num_train=2, num_val=2, image_size=64)
    config = write_config(root / 'config.py', root / 'data',
                          'train_cfg = dict(max_epochs=1)\n')
    crafted = payloads.save(root / 'crafted.pth',
                            {'meta': {'iter': 0, 'epoch': 0},
                             'extra': payloads.object_flagged_dtype_array()})
    pretrained = root / 'pretrained.py'
    pretrained.write_text(f'_base_ = {config.name!r}\nmodel = dict(backbone=dict(init_cfg=dict('
                          f'_delete_=True, type="Pretrained", checkpoint={str(crafted)!r})))\n')
    model = build_adaptive_model(Config.fromfile(str(config)))
    checkpoint = root / 'epoch_1.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    table = root / 'query_table.json'
    QueryTable([{'name': 'w1.00_s1', 'width': 1.0, 'scale': 1.0, 'gflops': 1.0,
                 'coco/bbox_mAP': 0.5}], 'coco/bbox_mAP',
               checkpoint=weights_fingerprint(model)).save(str(table))
    return dict(root=root, config=config, crafted=crafted, table=table, pretrained=pretrained,
                checkpoint=checkpoint)


def run_tool(monkeypatch, args: List) -> None:
    monkeypatch.setattr(sys, 'argv', [str(a) for a in args])
    runpy.run_path(str(REPO / 'tools' / args[0]), run_name='__main__')


def tool_arguments(setup: dict, entry: str) -> List:
    root, config, crafted = setup['root'], setup['config'], setup['crafted']
    work_dir = root / f'work_{entry}'
    if entry == 'resume (automatic)':
        work_dir.mkdir(exist_ok=True)
        (work_dir / 'last_checkpoint').write_text(str(crafted))
    return {
        'resume (explicit)': ['train.py', config, '--work-dir', work_dir, '--resume', crafted],
        'resume (automatic)': ['train.py', config, '--work-dir', work_dir, '--resume'],
        'load_from': ['train.py', config, '--work-dir', work_dir,
                      '--cfg-options', f'load_from={crafted}'],
        'init_cfg': ['train.py', setup['pretrained'], '--work-dir', work_dir],
        'test.py': ['test.py', config, crafted, '--work-dir', work_dir],
        'export_subnet.py': ['export_subnet.py', config, crafted, '--width', '1.0',
                             '--out', work_dir],
        'convert_mutualnet_ckpt.py': ['convert_mutualnet_ckpt.py', crafted,
                                      work_dir / 'converted.pth'],
        'calibrate_bn_stats.py': ['calibrate_bn_stats.py', config, crafted, '--query-table',
                                  setup['table'], '--out', work_dir / 'bn_stats.pth'],
    }[entry]


TOOL_ENTRIES = ['resume (explicit)', 'resume (automatic)', 'load_from', 'init_cfg', 'test.py',
                'export_subnet.py', 'convert_mutualnet_ckpt.py', 'calibrate_bn_stats.py']


@pytest.mark.parametrize('entry', TOOL_ENTRIES)
def test_tools_refuse_a_crafted_checkpoint(setup, entry, monkeypatch):
    with pytest.raises(pickle.UnpicklingError, match='refused') as error:
        run_tool(monkeypatch, tool_arguments(setup, entry))
    assert str(setup['crafted']) in str(error.value)
    assert 'numpy dtype state' in str(error.value)


@pytest.mark.parametrize('argument', ['checkpoint', 'bn_stats'])
def test_adaptive_inferencer_refuses_a_crafted_file(setup, argument):
    kwargs = dict(checkpoint=str(setup['checkpoint']), bn_stats=None, calibrate=False)
    kwargs[argument] = str(setup['crafted'])
    with pytest.raises(pickle.UnpicklingError, match='refused') as error:
        AdaptiveInferencer(str(setup['config']), query_table=str(setup['table']), **kwargs)
    assert str(setup['crafted']) in str(error.value)


def test_every_tool_that_reads_a_checkpoint_is_covered() -> None:
    # A new tool that loads checkpoints must join the list above.
    readers = {path.name for path in (REPO / 'tools').glob('*.py')
               if 'checkpoint' in path.read_text() and path.name != 'make_demo_data.py'}
    covered = {entry if entry.endswith('.py') else 'train.py' for entry in TOOL_ENTRIES}
    assert readers <= covered | {'check_env.py', 'patch_mmaction.py'}, readers - covered
    assert Path(REPO / 'tools/train.py').exists()
