"""--check-data reads the samples of every dataset type the configs use, not only COCO."""
import json
import re
import runpy
import shutil
import struct
import sys
import warnings
import zlib
from pathlib import Path

import pytest
from mmengine.config import Config

from mutualnet_mm.datasets import generate_motion_clips, write_digits
from mutualnet_mm.datasets.trees import write_trees_coco
from mutualnet_mm.reliability.data_checks import MAX_IMAGE_PIXELS, DataWarning, check_data_config

REPO = Path(__file__).parents[2]
DIGITS = REPO / 'configs/demo/resnet18_mutual_digits.py'
IMAGENET = REPO / 'configs/classification/resnet18_mutual_in1k.py'
VIDEO = REPO / 'configs/demo/x3d_mutual_demo.py'
TREES = REPO / 'configs/demo/retinanet_mutual_r18_trees.py'
SPLITS = ('train', 'val', 'test')


@pytest.fixture(scope='module')
def digits(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('digits_checks') / 'digits'
    write_digits(str(root), size=32)
    return root


@pytest.fixture
def broken(digits: Path, tmp_path: Path) -> Path:
    """A copy of the digits to break."""
    return Path(shutil.copytree(digits, tmp_path / 'digits'))


def with_data_root(path: Path, data_root: Path) -> Config:
    cfg = Config.fromfile(str(path))
    for split in SPLITS:
        cfg[f'{split}_dataloader'].dataset.data_root = str(data_root)
    return cfg


def oversized_png(source: Path, side: int = 12000) -> bytes:
    """``source`` (a PNG) with a header claiming ``side`` x ``side`` pixels."""
    data = source.read_bytes()
    header = b'IHDR' + struct.pack('>II', side, side) + data[24:29]
    return data[:12] + header + struct.pack('>I', zlib.crc32(header)) + data[33:]


def plant(folder: Path) -> dict:
    """Break the first images of ``folder``: empty, truncated, undecodable, oversized."""
    images = sorted(folder.iterdir())
    bad = dict(zip(('empty', 'truncated', 'garbage', 'oversized'), images))
    intact = images[5].read_bytes()
    bad['empty'].write_bytes(b'')
    bad['truncated'].write_bytes(intact[:len(intact) // 2])
    bad['garbage'].write_bytes(b'not an image at all')
    bad['oversized'].write_bytes(oversized_png(images[5]))
    return bad


def expected_reasons(bad: dict) -> list:
    return [rf"'{bad['empty']}': empty file",
            rf"'{bad['truncated']}': cannot be decoded \(truncated or corrupt\)",
            rf"'{bad['garbage']}': cannot be decoded",
            rf"'{bad['oversized']}': too large to decode: 12000 x 12000 = 144000000 pixels, "
            rf'more than MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}']


def test_every_unreadable_image_of_an_image_folder_is_listed(broken: Path, capsys) -> None:
    bad = plant(broken / 'train/0')
    last = sorted((broken / 'train/9').iterdir())[-1]  # image 1438 of 1438
    last.write_bytes(b'')
    cfg = with_data_root(DIGITS, broken)
    with pytest.raises(ValueError, match=rf"train_dataloader\.dataset: 4 of 100 images read "
                                         rf"from '{broken}/train' are unreadable: ") as error:
        check_data_config(cfg, ['train'])  # fast: the first 100
    for reason in expected_reasons(bad):
        assert re.search(reason, str(error.value)), reason
    assert str(last) not in str(error.value)
    with pytest.raises(ValueError, match=rf"5 of 1438 images read from '{broken}/train' are "
                                         rf".*'{last}': empty file\. Replace them"):
        check_data_config(cfg, ['train'], mode='all')
    assert '1438/1438' in capsys.readouterr().out  # the progress bar
    check_data_config(cfg, ['val'], mode='all')  # the intact split passes


def test_train_tool_checks_an_image_folder_before_training(broken: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    last = sorted((broken / 'val/9').iterdir())[-1]
    last.write_bytes(last.read_bytes()[:40])
    options = [f'{split}_dataloader.dataset.data_root={broken}' for split in SPLITS]
    monkeypatch.setattr(sys, 'argv', ['train.py', str(DIGITS), '--work-dir',
                                      str(tmp_path / 'work'), '--check-data', 'all',
                                      '--cfg-options', *options])
    with pytest.raises(ValueError, match=rf"val_dataloader\.dataset: 1 of 359 images read "
                                         rf"from '{broken}/val' are unreadable: '{last}': "
                                         r'cannot be decoded'):
        runpy.run_path(str(REPO / 'tools/train.py'), run_name='__main__')
    assert not (tmp_path / 'work').exists()  # nothing was built


def test_an_imagenet_style_list_with_a_symbolic_link_loop(digits: Path, tmp_path: Path) -> None:
    """ImageNet's layout (meta/train.txt, a string data_prefix) from the digits."""
    root = tmp_path / 'imagenet'
    shutil.copytree(digits / 'train', root / 'train')
    loop = root / 'train/3/loop.png'
    loop.symlink_to(loop.name)  # points at itself
    missing = root / 'train/4/gone.png'
    lines = [f'{p.parent.name}/{p.name} {p.parent.name}'
             for p in sorted((root / 'train').rglob('*.png'))[:150]]
    (root / 'meta').mkdir()
    (root / 'meta/train.txt').write_text('\n'.join(lines + ['3/loop.png 3']) + '\n')
    cfg = Config.fromfile(str(IMAGENET))
    cfg.train_dataloader.dataset.data_root = str(root)
    check_data_config(cfg, ['train'])  # the first 100 are intact
    with pytest.raises(ValueError, match=rf"1 of 151 images read from "
                                         rf"'{root}/meta/train.txt' are unreadable: '{loop}': "
                                         r'cannot be opened \(Too many levels of symbolic '
                                         r'links\)'):
        check_data_config(cfg, ['train'], mode='all')
    (root / 'meta/train.txt').write_text('\n'.join(['4/gone.png 4'] + lines) + '\n')
    with pytest.raises(FileNotFoundError, match=rf"image '{missing}' \(in '{root}/meta/"
                                                rf"train\.txt'\) does not exist; every listed "
                                                rf"file must be under data_prefix "
                                                rf"'{root}/train'"):
        check_data_config(cfg, ['train'])


def test_video_clips_are_opened(tmp_path: Path) -> None:
    root = tmp_path / 'clips'
    generate_motion_clips(root, num_train=3, num_val=1, size=32, frames=8)
    cfg = Config.fromfile(str(VIDEO))
    for split in SPLITS:
        dataset = cfg[f'{split}_dataloader'].dataset
        dataset.data_prefix.video = str(root)
        dataset.ann_file = str(root / Path(dataset.ann_file).name)
    check_data_config(cfg, ['train', 'val'], mode='all')
    clip = sorted(root.glob('train/*.mp4'))[1]
    clip.write_bytes(b'')
    with pytest.raises(ValueError, match=rf"train_dataloader\.dataset: 1 of 3 files read from "
                                         rf"'{root}/train_list\.txt' are unreadable: "
                                         rf"'{clip}': empty file"):
        check_data_config(cfg, ['train'])


@pytest.fixture(scope='module')
def trees(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('trees_checks') / 'trees'
    write_trees_coco(root)
    return root


def trees_config(root: Path, **options) -> Config:
    cfg = Config.fromfile(str(TREES))
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': f'{root}/',
                         'val_dataloader.dataset.data_root': f'{root}/',
                         'val_evaluator.ann_file': f'{root}/annotations/instances_val.json',
                         **options})
    return cfg


def data_warnings(cfg: Config, splits=('train', 'val')) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        check_data_config(cfg, list(splits))
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_the_tree_demo_data_passes_without_a_warning(trees: Path) -> None:
    assert data_warnings(trees_config(trees)) == []


def test_classes_naming_none_of_the_categories_are_an_error(trees: Path) -> None:
    cfg = trees_config(trees, **{'train_dataloader.dataset.metainfo.classes': ('Dead', 'Alive')})
    with pytest.raises(ValueError, match=r"train_dataloader\.dataset\.metainfo\.classes "
                                         r"\['Dead', 'Alive'\] names none of the categories "
                                         r".*\(\['Tree'\]\): mmdet would train on no box"):
        check_data_config(cfg, ['train'])


def test_categories_left_out_and_classes_with_few_boxes_are_named(trees: Path,
                                                                   tmp_path: Path) -> None:
    root = Path(shutil.copytree(trees, tmp_path / 'trees'))
    ann_file = root / 'annotations/instances_train.json'
    content = json.loads(ann_file.read_text())
    content['categories'].append(dict(id=2, name='Dead', supercategory='plant'))
    relabelled = [a for a in content['annotations'] if not a['iscrowd']][:7]
    for annotation in relabelled:
        annotation['category_id'] = 2
    ann_file.write_text(json.dumps(content))
    assert data_warnings(trees_config(root), ['train']) == [
        f"train_dataloader.dataset.ann_file '{ann_file}': mmdet leaves out 7 of "
        f"{len(content['annotations'])} annotations, of categories that "
        "train_dataloader.dataset.metainfo.classes ['Tree'] does not name: 'Dead' (7)"]
    both = trees_config(root, **{'train_dataloader.dataset.metainfo.classes': ('Tree', 'Dead')})
    found = data_warnings(both, ['train'])
    assert len(found) == 1 and re.search(r"class 'Dead' has 7 training boxes \(fewer than 10; "
                                         r'1104 in all\): too few to learn', found[0])


def test_empty_tiles_left_out_by_filter_empty_gt_are_counted(trees: Path) -> None:
    cfg = trees_config(trees, **{'train_dataloader.dataset.filter_cfg.filter_empty_gt': True})
    found = data_warnings(cfg, ['train'])
    assert len(found) == 1 and re.search(
        r"3 of 66 images have no annotation of the classes \(e\.g\. '2019_YELL_2_528000_"
        r'.*filter_empty_gt=True leaves them out of training; set it to False', found[0])


@pytest.mark.parametrize('options, limit', [
    ({'model.test_cfg.max_per_img': 40}, 'model.test_cfg.max_per_img = 40'),
    ({'val_evaluator.proposal_nums': (1, 10, 30)}, r'val_evaluator.proposal_nums\[-1\] = 30'),
])
def test_dense_validation_images_over_a_detection_limit_are_named(trees: Path, options: dict,
                                                                  limit: str) -> None:
    found = data_warnings(trees_config(trees, **options), ['val'])
    assert len(found) == 1 and re.search(
        r"val_dataloader\.dataset\.ann_file '.*instances_val\.json': image id \d+ has 49 "
        rf'boxes, more than {limit}: its recall and AP are capped', found[0])
