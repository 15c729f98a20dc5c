"""The tiled tree-crown data: counts, boxes inside their tiles, a split without shared
trees, empty tiles, bad source files, and mmdet's stock loader and COCO evaluator on it."""
import contextlib
import io
import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from mutualnet_mm.datasets.trees import (
    INSTALL_COMMAND,
    SOURCES,
    TREE_CLASSES,
    clip_to_tile,
    find_deepforest_data,
    read_voc_photo,
    tile_boxes,
    tile_origins,
    write_trees_coco,
)

REPO = Path(__file__).parents[2]
#: The figures of deepforest 2.1.0's photographs with the default tiling.
SOURCE_BOXES = {'train': 672, 'val': 279}
TILES = {'train': 66, 'val': 12}
KEPT_BOXES = {'train': 1104, 'val': 414}
EMPTY_TILES = {'train': 3, 'val': 0}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('trees') / 'trees'
    summary = write_trees_coco(root)
    assert summary['generated']
    return root


def load_coco(root: Path, split: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return COCO(str(root / 'annotations' / f'instances_{split}.json'))


def test_tiles_cover_the_side_with_the_stated_overlap() -> None:
    assert tile_origins(400, 400, 100) == [0]
    assert tile_origins(300, 400, 100) == [0]  # one smaller tile
    for length, tile, overlap in ((2299, 400, 100), (1249, 400, 0), (1035, 400, 0)):
        origins = tile_origins(length, tile, overlap)
        assert origins[0] == 0 and origins[-1] + tile == length
        assert all(tile - overlap >= b - a > 0 for a, b in zip(origins, origins[1:]))
    assert tile_boxes(500, 300, 400, 100) == [(0, 0, 400, 300), (100, 0, 500, 300)]


def test_a_box_is_kept_with_enough_of_its_area_else_ignored_or_left_out() -> None:
    boxes = np.array([[10, 10, 30, 30],     # inside
                      [90, 10, 110, 30],    # half inside: kept (0.5)
                      [95, 10, 115, 30],    # a quarter inside: an ignored fragment
                      [99, 10, 119, 30],    # a 1 px sliver: left out
                      [150, 10, 170, 30]],  # outside
                     np.float64)
    clipped, kept, fragment = clip_to_tile(boxes, (0, 0, 100, 100), min_visible=0.5)
    assert kept.tolist() == [True, True, False, False, False]
    assert fragment.tolist() == [False, False, True, False, False]
    assert clipped[1].tolist() == [90, 10, 100, 30]


def test_counts_match_the_summary_and_the_files(data_root: Path) -> None:
    summary = json.loads((data_root / 'meta.json').read_text())['summary']
    for split in ('train', 'val'):
        coco = load_coco(data_root, split)
        counts = summary[split]
        assert counts['source_boxes'] == SOURCE_BOXES[split]
        assert counts['tiles'] == TILES[split] == len(coco.getImgIds())
        assert counts['empty_tiles'] == EMPTY_TILES[split]
        kept = [a for a in coco.dataset['annotations'] if not a['iscrowd']]
        crowd = [a for a in coco.dataset['annotations'] if a['iscrowd']]
        assert counts['boxes'] == KEPT_BOXES[split] == len(kept)
        assert counts['ignored_fragments'] == len(crowd)
        assert [c['name'] for c in coco.dataset['categories']] == list(TREE_CLASSES)
        assert len(list((data_root / split).iterdir())) == TILES[split]


def test_every_box_lies_inside_its_tile_and_is_its_source_crown_clipped(
        data_root: Path) -> None:
    photos = {name: read_voc_photo(find_deepforest_data() / f'{name}.xml')
              for name, _ in SOURCES}
    for split in ('train', 'val'):
        coco = load_coco(data_root, split)
        for image in coco.dataset['images']:
            left, top, right, bottom = image['source_region']
            assert (image['width'], image['height']) == (right - left, bottom - top)
            source = photos[image['source']]
            for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
                x, y, w, h = annotation['bbox']
                assert 0 <= x and 0 <= y and x + w <= image['width'] \
                    and y + h <= image['height'] and w > 0 and h > 0
                crown = source.boxes[annotation['source_index']]
                expected = np.clip(crown - [left, top, left, top], 0,
                                   [image['width'], image['height']] * 2)
                assert np.allclose([x, y, x + w, y + h], expected, atol=0.01)
                fraction = w * h / np.prod(crown[2:] - crown[:2])
                assert (fraction >= 0.5) == (not annotation['iscrowd'])


def test_no_tree_and_no_photograph_region_is_in_both_splits(data_root: Path) -> None:
    regions = {split: [(image['source'], image['source_region'])
                       for image in load_coco(data_root, split).dataset['images']]
               for split in ('train', 'val')}
    for source, (left, top, right, bottom) in regions['val']:
        for other, (x1, y1, x2, y2) in regions['train']:
            assert other != source or min(right, x2) <= max(left, x1) \
                or min(bottom, y2) <= max(top, y1)
    trees = {split: {(image['source'], a['source_index'])
                     for image in load_coco(data_root, split).dataset['images']
                     for a in load_coco(data_root, split).imgToAnns[image['id']]}
             for split in ('train', 'val')}
    assert trees['train'] and trees['val'] and not trees['train'] & trees['val']


def test_empty_tiles_are_kept_as_negatives_or_dropped_and_counted(tmp_path: Path) -> None:
    kept = write_trees_coco(tmp_path / 'keep', tile_size=160, overlap=0)
    dropped = write_trees_coco(tmp_path / 'drop', tile_size=160, overlap=0,
                               empty_tiles='drop')
    for split in ('train', 'val'):
        empty = kept[split]['empty_tiles']
        assert dropped[split]['empty_tiles'] == dropped[split]['dropped_empty_tiles'] == empty
        assert dropped[split]['tiles'] == kept[split]['tiles'] - empty
        with_boxes = {a['image_id'] for a in load_coco(tmp_path / 'keep', split)
                      .dataset['annotations'] if not a['iscrowd']}
        assert kept[split]['tiles'] - len(with_boxes) == empty
        assert len(list((tmp_path / 'drop' / split).iterdir())) == dropped[split]['tiles']
    assert kept['train']['empty_tiles'] > 0


def test_same_parameters_do_nothing_and_other_ones_replace_the_folder(tmp_path: Path) -> None:
    root = tmp_path / 'trees'
    write_trees_coco(root, tile_size=400, overlap=0)
    annotation_file = root / 'annotations' / 'instances_train.json'
    written = annotation_file.stat().st_mtime_ns
    assert not write_trees_coco(root, tile_size=400, overlap=0)['generated']
    assert annotation_file.stat().st_mtime_ns == written
    assert write_trees_coco(root, tile_size=400, overlap=50)['generated']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['trees']  # no staging left


def test_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(ValueError, match='notes.txt'):
        write_trees_coco(tmp_path)
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'


@pytest.mark.parametrize('kwargs, message', [
    (dict(tile_size=16), 'tile_size'),
    (dict(overlap=400), 'overlap'),
    (dict(min_visible=0.0), 'min_visible'),
    (dict(empty_tiles='skip'), "empty_tiles must be one of .* got 'skip'"),
])
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_trees_coco(tmp_path / 'data', **kwargs)
    assert not (tmp_path / 'data').exists()


def broken_source(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of deepforest's data folder with ``old`` replaced by ``new`` in OSBS_029.xml."""
    data = tmp_path / 'data'
    data.mkdir()
    for path in find_deepforest_data().iterdir():
        (data / path.name).symlink_to(path)
    xml = data / 'OSBS_029.xml'
    text = xml.read_text()
    assert old in text
    xml.unlink()
    xml.write_text(text.replace(old, new, 1))
    return data


@pytest.mark.parametrize('old, new, message', [
    ('<xmax>227</xmax>', '<xmax>203</xmax>', r'object 0 has a degenerate box .*203\.0, 67\.0, '
                                             r'203\.0, 90\.0'),
    ('<xmax>227</xmax>', '<xmax>401</xmax>', r'object 0 has box .*401\.0.* outside the '
                                             r'400x400 image'),
    ('<name>Tree</name>', '<name>Shrub</name>', "object 0 has label 'Shrub'"),
    ('<xmax>227</xmax>', '<xmax>nan</xmax>', "<bndbox/xmax> is 'nan', not a finite number"),
    ('<width>400</width>', '<width>500</width>', 'is 400x400, its annotation file says '
                                                 '500x400'),
])
def test_a_bad_source_annotation_is_named(tmp_path: Path, old: str, new: str,
                                          message: str) -> None:
    data = broken_source(tmp_path, old, new)
    with pytest.raises(ValueError, match=message) as error:
        write_trees_coco(tmp_path / 'out', data_dir=data)
    assert 'OSBS_029' in str(error.value)
    assert not (tmp_path / 'out').exists()


def test_a_missing_package_names_the_install_command(monkeypatch) -> None:
    site = Path(find_deepforest_data()).parents[1]
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if Path(p) != site])
    with pytest.raises(ModuleNotFoundError, match=f'install it with `{INSTALL_COMMAND}`'):
        find_deepforest_data()
    assert 'deepforest' not in sys.modules  # located, never imported


def test_the_tool_prints_counts_and_box_sizes(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / 'trees'
    monkeypatch.setattr(sys, 'argv', ['make_trees_data.py', '--out', str(out)])
    runpy.run_path(str(REPO / 'tools/make_trees_data.py'), run_name='__main__')
    printed = capsys.readouterr().out
    assert f"train: 3 photographs, {SOURCE_BOXES['train']} crowns -> {TILES['train']} tiles" \
        in printed
    assert f"{KEPT_BOXES['val']} boxes" in printed and 'sqrt(area)' in printed
    shutil.rmtree(out)


def test_stock_mmdet_coco_dataset_loads_boxes_and_ignored_pieces(data_root: Path) -> None:
    from mmdet.datasets import CocoDataset
    from mmdet.registry import TRANSFORMS

    pipeline = [TRANSFORMS.build(dict(type='LoadImageFromFile')),
                TRANSFORMS.build(dict(type='LoadAnnotations', with_bbox=True)),
                TRANSFORMS.build(dict(type='PackDetInputs'))]
    dataset = CocoDataset(data_root=str(data_root), ann_file='annotations/instances_train.json',
                          data_prefix=dict(img='train/'), metainfo=dict(classes=TREE_CLASSES),
                          filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline)
    assert len(dataset) == TILES['train']
    coco = load_coco(data_root, 'train')
    index = next(i for i, image_id in enumerate(coco.getImgIds())
                 if any(a['iscrowd'] for a in coco.imgToAnns[image_id]))
    sample = dataset[index]
    assert tuple(sample['inputs'].shape) == (3, 400, 400)
    annotations = coco.imgToAnns[coco.getImgIds()[index]]
    assert len(sample['data_samples'].gt_instances) == \
        sum(not a['iscrowd'] for a in annotations)
    assert len(sample['data_samples'].ignored_instances) == \
        sum(a['iscrowd'] for a in annotations)
