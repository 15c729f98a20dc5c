"""The motion-clips demo data: deterministic, readable by decord, PyAV and VideoDataset."""
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from mmaction.registry import DATASETS
from mmengine.registry import init_default_scope

from mutualnet_mm.datasets import MOTION_CLASSES, generate_motion_clips
from mutualnet_mm.datasets.motion_clips import _trajectory

SMALL = dict(num_train=7, num_val=2, size=32, frames=8)


@pytest.fixture(scope='module')
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('motion') / 'clips'
    generate_motion_clips(root, seed=3, **SMALL)
    return root


def files(root: Path) -> dict:
    """Every file's bytes by relative path (meta.json names the root: left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file() and p.name != 'meta.json'}


def test_same_seed_same_files_and_clips_do_not_depend_on_the_split_size(
        clips: Path, tmp_path: Path) -> None:
    again = generate_motion_clips(tmp_path / 'again', seed=3, **SMALL)
    assert again['generated'] and files(tmp_path / 'again') == files(clips)
    longer = tmp_path / 'longer'
    generate_motion_clips(longer, seed=3, **dict(SMALL, num_train=9))
    assert (longer / 'train/000006.mp4').read_bytes() == (clips / 'train/000006.mp4').read_bytes()
    other = tmp_path / 'other'
    generate_motion_clips(other, seed=4, **SMALL)
    assert (other / 'train/000000.mp4').read_bytes() != (clips / 'train/000000.mp4').read_bytes()


def test_lists_are_balanced_video_dataset_lists(clips: Path) -> None:
    lines = (clips / 'train_list.txt').read_text().splitlines()
    assert lines[:2] == ['train/000000.mp4 0', 'train/000001.mp4 1']
    labels = [int(line.split()[1]) for line in lines]
    assert labels == [i % len(MOTION_CLASSES) for i in range(SMALL['num_train'])]
    assert (clips / 'val_list.txt').read_text() == 'val/000000.mp4 0\nval/000001.mp4 1\n'


def test_decord_and_pyav_read_every_frame(clips: Path) -> None:
    path = str(clips / 'train/000004.mp4')
    reader = decord.VideoReader(path)
    assert len(reader) == SMALL['frames']
    decoded = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert decoded.shape == (SMALL['frames'], 32, 32, 3)
    with av.open(path) as container:
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    assert len(frames) == SMALL['frames'] and frames[0].shape == (32, 32, 3)
    assert np.abs(np.stack(frames).astype(int) - decoded).max() <= 2  # same decoder output
    assert np.abs(decoded[0].astype(int) - decoded[-1]).max() > 50  # the shape moved


def test_stock_video_dataset_loads_a_clip(clips: Path) -> None:
    init_default_scope('mmaction')
    dataset = DATASETS.build(dict(
        type='VideoDataset', ann_file=str(clips / 'train_list.txt'),
        data_prefix=dict(video=str(clips)),
        pipeline=[dict(type='DecordInit'),
                  dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1),
                  dict(type='DecordDecode'),
                  dict(type='Resize', scale=(-1, 24)),
                  dict(type='FormatShape', input_format='NCTHW'),
                  dict(type='PackActionInputs')]))
    assert len(dataset) == SMALL['num_train']
    sample = dataset[1]
    assert tuple(sample['inputs'].shape) == (1, 3, 4, 24, 24)
    assert int(sample['data_samples'].gt_label) == 1


@pytest.mark.parametrize('motion', MOTION_CLASSES)
def test_trajectories_follow_the_class_and_stay_inside(motion: str) -> None:
    size, frames = 64, 16
    for seed in range(20):
        centres, radii = _trajectory(np.random.default_rng(seed), motion, size, frames)
        assert (centres - radii[:, None] >= 0).all() and (centres + radii[:, None] <= size).all()
        dx, dy = centres[-1] - centres[0]
        change = radii[-1] / radii[0]
        expected = {'move_left': dx < -15, 'move_right': dx > 15, 'move_up': dy < -15,
                    'move_down': dy > 15, 'grow': change > 1.9, 'shrink': change < 1 / 1.9}
        assert expected[motion], (motion, dx, dy, change)
        moved = {'move_left': dx, 'move_right': dx, 'move_up': dy, 'move_down': dy}
        assert abs(dx) + abs(dy) == pytest.approx(abs(moved.get(motion, 0.0)))


def test_reruns_are_idempotent_and_foreign_folders_refused(tmp_path: Path) -> None:
    root = tmp_path / 'clips'
    assert generate_motion_clips(root, **SMALL)['generated']
    stamp = (root / 'train/000000.mp4').stat().st_mtime_ns
    assert not generate_motion_clips(root, **SMALL)['generated']
    assert (root / 'train/000000.mp4').stat().st_mtime_ns == stamp
    regenerated = generate_motion_clips(root, **dict(SMALL, num_train=3))
    assert regenerated['generated'] and len(list((root / 'train').iterdir())) == 3
    (tmp_path / 'foreign').mkdir()
    (tmp_path / 'foreign' / 'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match='not empty'):
        generate_motion_clips(tmp_path / 'foreign', **SMALL)


@pytest.mark.parametrize('kwargs, message', [
    (dict(size=33), 'size must be an even integer'),
    (dict(size=16), 'size must be an even integer'),
    (dict(frames=2), 'frames must be an integer in'),
    (dict(num_train=0), 'num_train must be an integer >= 1'),
    (dict(num_val=1.5), 'num_val must be an integer >= 1'),
    (dict(seed=-1), 'seed must be an integer >= 0'),
])
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_motion_clips(tmp_path / 'x', **dict(SMALL, **kwargs))
    assert not (tmp_path / 'x').exists()
