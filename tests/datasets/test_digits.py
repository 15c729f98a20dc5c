"""The digits demo data: scikit-learn's scans as an mmpretrain image folder."""
import hashlib
import json
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS

from mutualnet_mm.datasets import DIGIT_CLASSES, write_digits

DEMO = Path(__file__).parents[2] / 'configs/demo/resnet18_mutual_digits.py'


def digests(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*.png'))}


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('digits')
    assert write_digits(str(root), size=32) == {'train': 1438, 'val': 359}
    return root


def test_every_scan_is_written_once_per_class_folder(digits_root: Path) -> None:
    files = digests(digits_root)
    assert len(files) == 1797  # all of scikit-learn's digits
    names = [Path(f).name for f in files]
    assert len(set(names)) == len(names)  # no scan in both splits
    for split in ('train', 'val'):
        assert sorted(p.name for p in (digits_root / split).iterdir()) == list(DIGIT_CLASSES)


def test_split_and_images_are_reproducible(digits_root: Path, tmp_path: Path) -> None:
    write_digits(str(tmp_path), size=32)
    assert digests(tmp_path) == digests(digits_root)
    write_digits(str(tmp_path), size=32, seed=1)  # replaces the split folders
    assert len(digests(tmp_path)) == 1797 and digests(tmp_path) != digests(digits_root)


def test_custom_dataset_reads_the_folder(digits_root: Path) -> None:
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=str(digits_root), data_prefix='val',
            pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
    assert len(dataset) == 359 and dataset.metainfo['classes'] == DIGIT_CLASSES
    item = dataset[0]
    assert tuple(item['inputs'].shape) == (3, 32, 32)
    assert item['inputs'].max() > 200  # ink, scaled from 16 grey levels to 255


@pytest.mark.parametrize('kwargs, message', [
    (dict(size=4), 'size must be an integer >= 8, got 4'),
    (dict(val_fraction=1.0), r'val_fraction must be a number in \(0, 1\), got 1.0'),
])
def test_bad_arguments_name_the_value(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_digits(str(tmp_path), **kwargs)


def test_demo_config_trains_on_the_folder_and_evaluates_each_configuration(
        digits_root: Path, tmp_path: Path) -> None:
    cfg = Config.fromfile(str(DEMO))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].batch_size = 8
        cfg[key].dataset.update(data_root=str(digits_root), indices=8)  # one batch
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.param_scheduler.T_max = 1
    cfg.val_cfg.calibration = dict(num_batches=1)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    assert runner.model.head.fc.out_features == 10
    records = json.loads((tmp_path / 'per_config.json').read_text())['records']
    assert {(r['width'], r['input_shape'][-1]) for r in records} == {
        (w, s) for w in (1.0, 0.75, 0.5, 0.25) for s in (32, 27, 23, 18)}
