"""``tools/test.py`` takes mmdet's --out, --show-dir and --tta, per configuration."""
import json
import pickle
import runpy
import sys
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.config import Config

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.datasets.motion_clips import generate_motion_clips
from mutualnet_mm.deploy import build_adaptive_model

from ..reliability.tiny_detection import REPO, write_config

# Runs the tools or trainings in processes: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow

GRID = ['--widths', '1.0', '0.25', '--scales', '1.0']
NAMES = ['w1.00_s1', 'w0.25_s1']


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('test_tool')
    generate_coco_shapes(root / 'data', num_train=2, num_val=2, image_size=64)
    config = write_config(root / 'config.py', root / 'data',
                          'test_cfg = dict(calibration=dict(num_batches=1))\n')
    boxes_only = write_config(root / 'boxes_only.py', root / 'data',
                              'test_cfg = dict(calibration=dict(num_batches=1))\n'
                              'model = dict(roi_head=dict(mask_roi_extractor=None, '
                              'mask_head=None))\ntest_evaluator = dict(metric="bbox")\n')
    checkpoints = {}
    for path in (config, boxes_only):
        torch.manual_seed(0)
        model = build_adaptive_model(Config.fromfile(str(path)))
        checkpoints[path] = root / f'{path.stem}.pth'
        torch.save({'state_dict': model.state_dict()}, checkpoints[path])
    return dict(config=config, checkpoint=checkpoints[config], boxes_only=dict(
        config=boxes_only, checkpoint=checkpoints[boxes_only]))


def run_test_tool(monkeypatch, setup: dict, work_dir: Path, extra: List[str]) -> None:
    argv = ['test.py', setup['config'], setup['checkpoint'], '--work-dir', work_dir, *GRID,
            *extra]
    monkeypatch.setattr(sys, 'argv', [str(a) for a in argv])
    runpy.run_path(str(REPO / 'tools/test.py'), run_name='__main__')


def dumped(path: Path) -> list:
    with open(path, 'rb') as f:  # written by this test's own run
        return pickle.load(f)


def test_out_and_show_dir_write_one_set_per_configuration(setup, monkeypatch, tmp_path):
    run_test_tool(monkeypatch, setup, tmp_path,
                  ['--out', tmp_path / 'results.pkl', '--show-dir', 'drawn'])
    for name in NAMES:
        predictions = dumped(tmp_path / f'results_{name}.pkl')
        assert len(predictions) == 2 and 'pred_instances' in predictions[0]
        drawn = list(tmp_path.glob(f'*/drawn/{name}/*.jpg'))
        assert len(drawn) == 2, name
    assert not (tmp_path / 'results.pkl').exists()


def test_head_widths_make_a_grid_dimension(setup, monkeypatch, tmp_path) -> None:
    run_test_tool(monkeypatch, setup, tmp_path, ['--head-widths', '0.5'])
    records = json.loads((tmp_path / 'per_config.json').read_text())['records']
    assert [r['name'] for r in records] == ['w1.00_h0.50_s1', 'w0.25_h0.50_s1']
    assert {r['head_width'] for r in records} == {0.5}


def test_tta_runs_the_augmented_views_at_every_configuration(setup, monkeypatch, tmp_path):
    detector = setup['boxes_only']
    run_test_tool(monkeypatch, detector, tmp_path / 'plain', ['--out', tmp_path / 'plain.pkl'])
    run_test_tool(monkeypatch, detector, tmp_path / 'tta', ['--out', tmp_path / 'tta.pkl',
                                                             '--tta'])
    for name in NAMES:
        plain, tta = dumped(tmp_path / f'plain_{name}.pkl'), dumped(tmp_path / f'tta_{name}.pkl')
        assert len(tta) == len(plain) == 2
        assert [p['pred_instances']['scores'].tolist() for p in plain] != \
            [p['pred_instances']['scores'].tolist() for p in tta], name
    plain, tta = (json.loads((tmp_path / run / 'per_config.json').read_text())['records']
                  for run in ('plain', 'tta'))
    assert [r['gflops'] for r in tta] == pytest.approx([2 * r['gflops'] for r in plain])


def test_out_must_be_a_pickle_file(setup, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"--out '.*results.json' must be a .pkl"):
        run_test_tool(monkeypatch, setup, tmp_path, ['--out', tmp_path / 'results.json'])


def test_tta_of_instance_segmentation_is_refused_before_running(setup, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match='--tta: .*instance segmentation'):
        run_test_tool(monkeypatch, setup, tmp_path, ['--tta'])


def test_video_dump_writes_one_file_per_configuration(monkeypatch, tmp_path) -> None:
    generate_motion_clips(tmp_path / 'clips', num_train=2, num_val=2, size=32, frames=16)
    config = tmp_path / 'x3d.py'
    loaders = '\n'.join(
        f'{key} = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict('
        f'data_prefix=dict(video={str(tmp_path / "clips")!r}), '
        f'ann_file={str(tmp_path / "clips" / f"{split}_list.txt")!r}))'
        for key, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                           ('test_dataloader', 'val')))
    config.write_text(f'_base_ = {str(REPO / "configs/demo/x3d_mutual_demo.py")!r}\n{loaders}\n'
                      'test_cfg = dict(calibration=dict(num_batches=1))\n')
    torch.manual_seed(0)
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': build_adaptive_model(Config.fromfile(str(config))).state_dict()},
               checkpoint)
    run_test_tool(monkeypatch, dict(config=config, checkpoint=checkpoint), tmp_path / 'work',
                  ['--dump', tmp_path / 'scores.pkl'])
    for name in NAMES:
        predictions = dumped(tmp_path / f'scores_{name}.pkl')
        assert len(predictions) == 2 and 'pred_score' in predictions[0], name
    with pytest.raises(ValueError, match='--tta is for detection configs'):
        run_test_tool(monkeypatch, dict(config=config, checkpoint=checkpoint),
                      tmp_path / 'work', ['--tta'])


def test_the_log_has_no_training_line_and_names_the_loader(setup, monkeypatch, tmp_path,
                                                           capsys):
    run_test_tool(monkeypatch, setup, tmp_path, [])
    # mmengine prints it (with no logger) as "by <loader name without load_from_> backend"
    assert 'Loads checkpoint by local backend from path: ' in capsys.readouterr().out
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'mutual learning:' not in log  # the train loop is not even built
    assert 'per-configuration results' in log
