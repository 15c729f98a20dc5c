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


#: The demo's default grid, largest first.
DEFAULT_GRID = [f'w{w:.2f}_s{s:g}' for w in (1.0, 0.75, 0.5, 0.25) for s in (1, 0.75, 0.5)]


def record_drawings(monkeypatch) -> list:
    """Make mmdet's visualizer record each ``add_datasample`` call (out file, sample)."""
    from mmdet.visualization import DetLocalVisualizer
    calls = []
    draw = DetLocalVisualizer.add_datasample

    def recording(self, name, image, data_sample=None, **kwargs):
        calls.append((kwargs.get('out_file'), image.shape, data_sample))
        return draw(self, name, image, data_sample=data_sample, **kwargs)

    monkeypatch.setattr(DetLocalVisualizer, 'add_datasample', recording)
    return calls


def annotated_boxes(data_root: Path) -> dict:
    """Image file name -> the ground-truth boxes (x1, y1, x2, y2) of the val annotations."""
    coco = json.loads((data_root / 'annotations/instances_val.json').read_text())
    names = {image['id']: image['file_name'] for image in coco['images']}
    boxes: dict = {}
    for annotation in coco['annotations']:
        x, y, w, h = annotation['bbox']
        boxes.setdefault(Path(names[annotation['image_id']]).name, []).append(
            [x, y, x + w, y + h])
    return boxes


def test_show_dir_draws_masks_at_every_configuration_of_the_grid(setup, monkeypatch,
                                                                  tmp_path) -> None:
    argv = ['test.py', setup['config'], setup['checkpoint'], '--work-dir', tmp_path,
            '--show-dir', 'drawn']
    monkeypatch.setattr(sys, 'argv', [str(a) for a in argv])
    calls = record_drawings(monkeypatch)
    runpy.run_path(str(REPO / 'tools/test.py'), run_name='__main__')
    timestamp, = [p.name for p in tmp_path.iterdir() if (p / 'drawn').is_dir()]
    for name in DEFAULT_GRID:  # mmdet's place: work_dir/<timestamp>/SHOW_DIR
        assert len(list((tmp_path / timestamp / 'drawn' / name).glob('*.jpg'))) == 2, name
    for _, shape, sample in calls:  # the masks of the image drawn on
        assert sample.gt_instances.masks.to_ndarray().shape[1:] == shape[:2]
        assert sample.pred_instances.masks.shape[1:] == shape[:2]


def test_show_dir_draws_the_ground_truth_on_the_original_image(setup, monkeypatch,
                                                               tmp_path) -> None:
    calls = record_drawings(monkeypatch)
    run_test_tool(monkeypatch, setup['boxes_only'], tmp_path,
                  ['--scales', '1.0', '0.5', '--show-dir', str(tmp_path / 'drawn')])
    expected = annotated_boxes(Path(setup['config']).parent / 'data')
    drawn = {}
    for out_file, _, sample in calls:
        configuration, image = Path(out_file).parts[-2:]
        drawn[configuration, image] = sample.gt_instances.bboxes.tolist()
    # an absolute SHOW_DIR is used as it is; scale 0.5 draws the boxes where they belong
    assert sorted({c for c, _ in drawn}) == sorted(
        f'w{w}_s{s}' for w in ('1.00', '0.25') for s in ('1', '0.5'))
    for (configuration, image), boxes in drawn.items():
        assert torch.allclose(torch.tensor(boxes), torch.tensor(expected[image])), \
            configuration
        assert (tmp_path / 'drawn' / configuration / image).is_file()


def test_export_finds_the_latency_table_test_py_wrote(setup, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # tools/test.py writes to ./work_dirs/<config name>/
    config, checkpoint = str(setup['config']), str(setup['checkpoint'])
    export = ['export_subnet.py', config, checkpoint, '--budget', '1000000', '--budget-unit',
              'ms', '--calibration-batches', '1', '--out', str(tmp_path / 'exported')]
    monkeypatch.setattr(sys, 'argv', export)
    with pytest.raises(FileNotFoundError) as missing:
        runpy.run_path(str(REPO / 'tools/export_subnet.py'), run_name='__main__')
    # the hint names the command to run and the place it writes to
    assert f'`python tools/test.py {config} {checkpoint} --cfg-options test_cfg.latency.' \
        'repeats=20` writes it to ./work_dirs/config/query_table_latency_ms.json' in \
        str(missing.value)
    monkeypatch.setattr(sys, 'argv', ['test.py', config, checkpoint, *GRID, '--cfg-options',
                                      'test_cfg.latency.repeats=2'])
    runpy.run_path(str(REPO / 'tools/test.py'), run_name='__main__')
    assert (tmp_path / 'work_dirs/config/query_table_latency_ms.json').is_file()
    monkeypatch.setattr(sys, 'argv', export)
    runpy.run_path(str(REPO / 'tools/export_subnet.py'), run_name='__main__')
    assert (tmp_path / 'exported/model.pth').is_file()


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


def test_video_dump_and_show_dir_write_one_set_per_configuration(monkeypatch, tmp_path) -> None:
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
                  ['--dump', tmp_path / 'scores.pkl', '--show-dir', 'drawn'])
    for name in NAMES:
        predictions = dumped(tmp_path / f'scores_{name}.pkl')
        assert len(predictions) == 2 and 'pred_score' in predictions[0], name
        # the config has no visualization hook: --show-dir draws each clip's frames
        drawn = list((tmp_path / 'work').glob(f'*/drawn/{name}/**/*.png'))
        assert len(drawn) == 2 * 8, name
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
