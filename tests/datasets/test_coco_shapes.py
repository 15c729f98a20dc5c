"""The generated shapes data: COCO-valid, consistent, deterministic, read by mmdet as is."""
import contextlib
import io
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mutualnet_mm.datasets import COCO_SHAPES_CLASSES, generate_coco_shapes

SIZE = 96
TINY = dict(num_train=6, num_val=4, image_size=SIZE, seed=3)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('coco_shapes')
    summary = generate_coco_shapes(root, **TINY)
    assert summary['generated'] and summary['num_train'] == 6 and summary['num_val'] == 4
    return root


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return COCO(str(path))


def perimeter(annotation: dict) -> float:
    return sum(cv2.arcLength(np.array(p, np.float32).reshape(-1, 1, 2), True)
               for p in annotation['segmentation'])


def test_same_seed_gives_identical_files(data_root, tmp_path):
    generate_coco_shapes(tmp_path / 'again', **TINY)
    for split, count in (('train', 6), ('val', 4)):
        name = f'annotations/instances_{split}.json'
        assert (tmp_path / 'again' / name).read_bytes() == (data_root / name).read_bytes()
        images = sorted((data_root / split).iterdir())
        assert len(images) == count
        for image in images:
            assert (tmp_path / 'again' / split / image.name).read_bytes() == image.read_bytes()
    generate_coco_shapes(tmp_path / 'other', **dict(TINY, seed=4))
    name = 'annotations/instances_train.json'
    assert (tmp_path / 'other' / name).read_bytes() != (data_root / name).read_bytes()


def test_same_parameters_do_nothing_and_new_ones_regenerate(tmp_path):
    root = tmp_path / 'data'
    generate_coco_shapes(root, **dict(TINY, num_train=3))
    annotation_file = root / 'annotations' / 'instances_train.json'
    written = annotation_file.stat().st_mtime_ns
    summary = generate_coco_shapes(root, **dict(TINY, num_train=3))
    assert not summary['generated'] and summary['num_train'] == 3
    assert annotation_file.stat().st_mtime_ns == written
    summary = generate_coco_shapes(root, **dict(TINY, num_train=2))
    assert summary['generated']
    assert sorted(p.name for p in (root / 'train').iterdir()) == ['000000.jpg', '000001.jpg']
    assert len(json.loads(annotation_file.read_text())['images']) == 2


@pytest.mark.parametrize('split', ['train', 'val'])
def test_annotations_are_consistent_coco(data_root, split):
    coco = load_coco(data_root / 'annotations' / f'instances_{split}.json')
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(COCO_SHAPES_CLASSES)
    assert len(coco.getImgIds()) == TINY[f'num_{split}']
    for image in coco.dataset['images']:
        assert (image['height'], image['width']) == (SIZE, SIZE)
        pixels = cv2.imread(str(data_root / split / image['file_name']))
        assert pixels.shape == (SIZE, SIZE, 3) and pixels.std() > 5  # textured, not flat
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
        assert 1 <= len(annotations) <= 6
        masks = []
        for annotation in annotations:
            assert annotation['iscrowd'] == 0 and annotation['area'] > 0
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in annotation['segmentation'])
            mask = coco.annToMask(annotation).astype(bool)
            # Rasterising moves the outline by under a quarter pixel on average.
            assert abs(mask.sum() - annotation['area']) <= 0.25 * perimeter(annotation) + 1
            x, y, w, h = annotation['bbox']
            assert 0 <= x and 0 <= y and x + w <= SIZE and y + h <= SIZE
            ys, xs = np.nonzero(mask)
            assert xs.min() >= np.floor(x) and xs.max() < np.ceil(x + w)
            assert ys.min() >= np.floor(y) and ys.max() < np.ceil(y + h)
            masks.append(mask)
        # Visible parts of occluding objects do not overlap (beyond rasterisation).
        for (a, mask_a), (b, mask_b) in itertools.combinations(zip(annotations, masks), 2):
            assert (mask_a & mask_b).sum() <= 0.1 * min(perimeter(a), perimeter(b))


def test_objects_range_from_tiny_to_large_and_overlap(data_root):
    sides, overlapping_pairs = [], 0
    for split in ('train', 'val'):
        coco = load_coco(data_root / 'annotations' / f'instances_{split}.json')
        for image_id in coco.getImgIds():
            boxes = [a['bbox'] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))]
            sides += [max(w, h) / SIZE for _, _, w, h in boxes]
            for (xa, ya, wa, ha), (xb, yb, wb, hb) in itertools.combinations(boxes, 2):
                overlapping_pairs += xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha
    assert min(sides) <= 0.08 and max(sides) >= 0.4
    assert overlapping_pairs >= 1


def test_stock_mmdet_coco_dataset_loads_it(data_root):
    from mmdet.datasets import CocoDataset
    from mmdet.registry import TRANSFORMS

    pipeline = [TRANSFORMS.build(dict(type='LoadImageFromFile')),
                TRANSFORMS.build(dict(type='LoadAnnotations', with_bbox=True, with_mask=True)),
                TRANSFORMS.build(dict(type='PackDetInputs'))]
    dataset = CocoDataset(data_root=str(data_root), ann_file='annotations/instances_train.json',
                          data_prefix=dict(img='train/'),
                          metainfo=dict(classes=COCO_SHAPES_CLASSES), pipeline=pipeline)
    assert len(dataset) == 6
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, SIZE, SIZE)
    instances = sample['data_samples'].gt_instances
    num = len(instances)
    assert num >= 1
    assert instances.masks.masks.shape == (num, SIZE, SIZE)
    assert instances.masks.masks.reshape(num, -1).sum(axis=1).min() > 0
    boxes = instances.bboxes.tensor
    assert boxes.shape == (num, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert set(instances.labels.tolist()) <= set(range(len(COCO_SHAPES_CLASSES)))


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_train=0), 'num_train'),
    (dict(num_val=-1), 'num_val'),
    (dict(image_size=16), 'image_size'),
    (dict(image_size=(96, 96, 3)), 'image_size'),
    (dict(size_range=(0.5, 0.2)), 'size_range'),
    (dict(size_range=(0.01, 0.5)), 'size_range low 0.01'),
    (dict(objects_per_image=(0, 3)), 'objects_per_image'),
    (dict(min_visible=0.0), 'min_visible'),
    (dict(seed=-1), 'seed'),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_coco_shapes(tmp_path / 'data', **dict(TINY, **kwargs))
    assert not (tmp_path / 'data').exists()


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(ValueError, match='not empty'):
        generate_coco_shapes(tmp_path, **TINY)
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'
