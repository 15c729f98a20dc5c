"""Bad input: each fails with an error naming the bad value and what is allowed."""
import json
import runpy
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.registry import MODELS, TRANSFORMS
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from mutualnet_mm.datasets import (
    COCO_SHAPES_CLASSES,
    UnreadableImageError,
    generate_coco_shapes,
)
from mutualnet_mm.deploy import build_adaptive_model
from mutualnet_mm.engine import MutualTrainStep, NonFiniteLossError
from mutualnet_mm.engine.subnet import check_scales
from mutualnet_mm.evaluation import PerConfigValLoop
from mutualnet_mm.ops import set_width
from mutualnet_mm.reliability.data_checks import DroppedAnnotationsWarning, check_data_config
from mutualnet_mm.reliability.state_dict import check_state_dict_fits

from .tiny_detection import REPO, write_config
from .tiny_video_net import build, make_batches

VIDEO_MUTUAL = dict(num_subnets=3, scales=(1.0, 0.5), rescaler=dict(type='VideoBatchRescaler'))


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('bad_input') / 'data'
    generate_coco_shapes(root, num_train=2, num_val=2, image_size=64)
    return root


@pytest.fixture
def broken(data: Path, tmp_path: Path) -> Path:
    """A copy of the data to break."""
    return Path(shutil.copytree(data, tmp_path / 'data'))


def config(data_root: Path, tmp_path: Path) -> Config:
    return Config.fromfile(str(write_config(tmp_path / 'config.py', data_root)))


def run_tool(name: str, args: list, monkeypatch) -> None:
    """Run ``tools/<name>`` in this process (its errors surface as exceptions)."""
    monkeypatch.setattr(sys, 'argv', [name, *map(str, args)])
    runpy.run_path(str(REPO / 'tools' / name), run_name='__main__')


def test_width_outside_the_range() -> None:
    model = build()
    with pytest.raises(ValueError, match=r'width 1\.5 is outside the range \[0\.25, 1\]'):
        set_width(model, 1.5)
    with pytest.raises(ValueError, match=r'mutual.width_range \(0\.1, 1\.0\) is outside the '
                                         r'range \(0\.25, 1\.0\) the model allows'):
        MutualTrainStep.from_config(dict(VIDEO_MUTUAL, width_range=(0.1, 1.0)), model)
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match=r'0 < min <= max <= 1\.0, got \(0\.5, 1\.5\)'):
        MODELS.build(dict(type='SlimmableResNet', depth=18, width_range=(0.5, 1.5)))


@pytest.mark.parametrize('scales, bad', [((), r'\(\)'), ([0.0, 1.0], '0.0'), ([1.0, 5], '5'),
                                         (1.0, '1.0')])
def test_empty_or_invalid_scale_list(scales, bad: str) -> None:
    with pytest.raises(ValueError, match=rf'mutual\.scales must .*in \(0, 4\], got {bad}'):
        MutualTrainStep.from_config(dict(VIDEO_MUTUAL, scales=scales), build())
    with pytest.raises(ValueError, match=r'PerConfigTestLoop\.scales must .*\(0, 4\]'):
        check_scales(scales, 'PerConfigTestLoop')



RESCALER = dict(type='VideoBatchRescaler')  # the tiny net's preprocessor has none registered


def test_negative_calibration_batches() -> None:
    loop = PerConfigValLoop.__new__(PerConfigValLoop)  # only the grid settings
    loop._runner = SimpleNamespace(model=build())
    with pytest.raises(ValueError, match=r'PerConfigValLoop\.calibration\.num_batches must be '
                                         r'an integer >= 0, got -1'):
        loop._setup_grid(None, (1.0,), dict(num_batches=-1), RESCALER, None, False)
    loop._setup_grid(None, (1.0,), dict(num_batches=0), RESCALER, None, False)
    assert loop.num_calibration_batches == 0


@pytest.mark.parametrize('latency, message', [
    (dict(repeats=0), r'latency\.repeats must be an integer >= 1, got 0'),
    (dict(repeats=-3), r'latency\.repeats must be an integer >= 1, got -3'),
    (dict(warmup=float('nan')), r'latency\.warmup must be an integer >= 0, got nan'),
    (dict(repeats=2.5), r'latency\.repeats must be an integer >= 1, got 2\.5'),
])
def test_bad_latency_options(latency: dict, message: str) -> None:
    loop = PerConfigValLoop.__new__(PerConfigValLoop)  # only the grid settings
    loop._runner = SimpleNamespace(model=build())
    with pytest.raises(ValueError, match=r'PerConfigValLoop\.' + message):
        loop._setup_grid(None, (1.0,), dict(num_batches=0), RESCALER, None, False, latency)
    loop._setup_grid(None, (1.0,), dict(num_batches=0), RESCALER, None, False,
                     dict(repeats=1, warmup=0))


def test_unknown_backbone_depth() -> None:
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match=r'depth must be one of \[18, 34, 50, 101, 152\], '
                                         r'got 19'):
        MODELS.build(dict(type='SlimmableResNet', depth=19))


def test_missing_data_root(data: Path, tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError, match=rf"train_dataloader\.dataset\.data_root "
                                                rf"'{missing}/' does not exist; it must be"):
        check_data_config(config(missing, tmp_path), ['train'])
    # tools/train.py checks before building anything.
    with pytest.raises(FileNotFoundError, match=rf"data_root '{missing}/' does not exist"):
        run_tool('train.py', [write_config(tmp_path / 'config.py', missing),
                              '--work-dir', tmp_path / 'work'], monkeypatch)


@pytest.mark.parametrize('content, message', [
    ('{"images": [', r'is not valid JSON \(Expecting value.*keys \[.images., .annotations., '
                     r'.categories.\]'),
    ('{"images": []}', r"is not a COCO annotation file: it lacks \['annotations', "
                       r"'categories'\]"),
])
def test_corrupt_annotation_json(broken: Path, tmp_path: Path, content: str,
                                 message: str) -> None:
    ann_file = broken / 'annotations/instances_train.json'
    ann_file.write_text(content)
    with pytest.raises(ValueError, match=rf"train_dataloader\.dataset\.ann_file "
                                         rf"'{ann_file}' {message}"):
        check_data_config(config(broken, tmp_path), ['train'])


def test_annotation_pointing_at_a_missing_image(broken: Path, tmp_path: Path) -> None:
    ann_file = broken / 'annotations/instances_train.json'
    image = json.loads(ann_file.read_text())['images'][1]
    (broken / 'train' / image['file_name']).unlink()
    with pytest.raises(FileNotFoundError,
                       match=rf"image '{broken}/train/{image['file_name']}' \(id {image['id']} "
                             rf"in '{ann_file}'\) does not exist; every listed file must be "
                             rf"under data_prefix '{broken}/train/'"):
        check_data_config(config(broken, tmp_path), ['train'])


def test_missing_annotation_file(broken: Path, tmp_path: Path) -> None:
    (broken / 'annotations/instances_val.json').unlink()
    with pytest.raises(FileNotFoundError, match=r"test_dataloader\.dataset\.ann_file '.*"
                                                r"instances_val\.json' does not exist"):
        check_data_config(config(broken, tmp_path), ['train', 'test'])



def edit_annotations(data_root: Path, edit) -> Path:
    """Apply ``edit`` to the train annotation file's content; return the file."""
    ann_file = data_root / 'annotations/instances_train.json'
    content = json.loads(ann_file.read_text())
    edit(content)
    ann_file.write_text(json.dumps(content))
    return ann_file


def test_rle_masks_under_poly2mask_false(broken: Path, tmp_path: Path, monkeypatch) -> None:
    def to_rle(content: dict) -> None:
        sizes = {image['id']: (image['height'], image['width']) for image in content['images']}
        for annotation in content['annotations'][:2]:
            rle = mask_utils.merge(mask_utils.frPyObjects(
                annotation['segmentation'], *sizes[annotation['image_id']]))
            annotation['segmentation'] = dict(rle, counts=rle['counts'].decode())

    ann_file = edit_annotations(broken, to_rle)
    total = len(json.loads(ann_file.read_text())['annotations'])
    cfg = config(broken, tmp_path)  # its train pipeline loads masks with poly2mask=False
    message = (rf"train_dataloader\.dataset\.ann_file '{ann_file}': 2 of {total} annotations "
               r'have RLE masks \(segmentation with counts\), e\.g\. id 1 .*LoadAnnotations\('
               r'poly2mask=False\) ignores every such instance, box included\. Set '
               r'poly2mask=True there or convert the masks to polygons')
    with pytest.raises(ValueError, match=message):
        run_tool('train.py', [write_config(tmp_path / 'config.py', broken),
                              '--work-dir', tmp_path / 'work'], monkeypatch)
    check_data_config(cfg, ['train'], training=False)  # BN calibration uses images only
    cfg.train_dataloader.dataset.pipeline[1].poly2mask = True
    check_data_config(cfg, ['train'])


def test_annotation_of_an_undeclared_category(broken: Path, tmp_path: Path) -> None:
    def shift(content: dict) -> None:
        content['annotations'][1]['category_id'] = 99

    ann_file = edit_annotations(broken, shift)
    annotation = json.loads(ann_file.read_text())['annotations'][1]
    total = len(json.loads(ann_file.read_text())['annotations'])
    with pytest.raises(ValueError, match=rf"ann_file '{ann_file}': 1 of {total} annotations "
                                         r'have a category_id that is not in its categories '
                                         r'\(ids \[1, 2, 3, 4, 5\]\), e\.g\. id '
                                         rf"{annotation['id']} \(bbox .*, category_id 99\); "
                                         r'mmdet would drop them'):
        check_data_config(config(broken, tmp_path), ['train'])


def test_annotations_mmdet_drops_are_counted(broken: Path, tmp_path: Path) -> None:
    def degenerate(content: dict) -> None:
        annotations = content['annotations']
        annotations[0]['bbox'][2] = 0  # zero width
        annotations[2]['bbox'][3] = -4  # negative height
        annotations[3]['area'] = 0
        annotations[4]['image_id'] = 999  # not in images
        annotations[5]['segmentation'] = [[1.0, 2.0, 30.0, 40.0]]  # 2 points
        annotations[6]['segmentation'] = [[1.0, 2.0], [5.0, 6.0, 7.0, 8.0, 9.0]]

    ann_file = edit_annotations(broken, degenerate)
    annotations = json.loads(ann_file.read_text())['annotations']
    total = len(annotations)
    with pytest.warns(DroppedAnnotationsWarning,
                      match=rf"ann_file '{ann_file}': mmdet drops 6 of {total} annotations "
                            rf'\({6 / total:.1%}\): 1 for an image_id that is not in images, '
                            rf"e\.g\. id {annotations[4]['id']} \(image_id 999, category_id "
                            r'\d\); 3 for their box \(width or height under 1 pixel, area <= 0, '
                            r'or outside the image\), e\.g\. id 1 \(bbox \[[\d.]+, [\d.]+, 0, .*'
                            r'; 2 for their polygons \(none has 3 points, .*\), e\.g\. id '
                            rf"{annotations[5]['id']} \(segmentation \[\[1\.0, 2\.0, 30\.0, "
                            r'40\.0\]\]'):
        check_data_config(config(broken, tmp_path), ['train'])
    # The count is mmdet's own: what CocoDataset keeps and its LoadAnnotations does not ignore.
    dataset = CocoDataset(data_root=str(broken), ann_file=str(ann_file),
                          data_prefix=dict(img='train/'), lazy_init=True,
                          metainfo=dict(classes=COCO_SHAPES_CLASSES))
    load = TRANSFORMS.build(dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
                                 poly2mask=False))
    trained = 0
    for info in dataset.load_data_list():
        results = load(dict(info, ori_shape=(info['height'], info['width'])))
        trained += int((~results['gt_ignore_flags']).sum())
    assert trained == total - 6


@pytest.mark.parametrize('coordinate, value', [(2, float('inf')), (2, float('nan')),
                                               (0, float('-inf'))])
def test_non_finite_box(broken: Path, tmp_path: Path, coordinate: int, value: float) -> None:
    def poison(content: dict) -> None:
        content['annotations'][1]['bbox'][coordinate] = value  # json writes NaN, Infinity

    ann_file = edit_annotations(broken, poison)
    total = len(json.loads(ann_file.read_text())['annotations'])
    with pytest.raises(ValueError, match=rf"ann_file '{ann_file}': 1 of {total} annotations "
                                         r'have a bbox that is not finite \(NaN or infinite\), '
                                         r'e\.g\. id 2 \(bbox \[.*(nan|inf).*\]'):
        check_data_config(config(broken, tmp_path), ['train'])


@pytest.fixture(scope='module')
def data_101(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('bad_input_101') / 'data'
    generate_coco_shapes(root, num_train=101, num_val=1, image_size=64)
    return root


def test_corrupt_image_after_the_first_100(data_101: Path, tmp_path: Path, monkeypatch,
                                           capsys) -> None:
    broken = Path(shutil.copytree(data_101, tmp_path / 'data'))
    ann_file = broken / 'annotations/instances_train.json'
    images = json.loads(ann_file.read_text())['images']
    bad = [broken / 'train' / images[i]['file_name'] for i in (100, 60)]
    bad[0].write_bytes(bad[0].read_bytes()[:1000])  # truncated
    bad[1].write_bytes(b'')
    cfg = config(broken, tmp_path)
    with pytest.raises(ValueError, match=rf"train_dataloader\.dataset: 1 of 100 images read "
                                         rf"from '{ann_file}' are unreadable: '{bad[1]}' \(id "
                                         rf"{images[60]['id']}\): empty file\. Replace them"):
        check_data_config(cfg, ['train'])  # fast: the first 100
    bad[1].write_bytes((broken / 'train' / images[0]['file_name']).read_bytes())
    check_data_config(cfg, ['train'])
    everything = rf"1 of 101 images read from '{ann_file}' are unreadable: '{bad[0]}' \(id " \
                 rf"{images[100]['id']}\): cannot be decoded \(truncated or corrupt\)"
    with pytest.raises(ValueError, match=everything):
        run_tool('train.py', [write_config(tmp_path / 'config.py', broken), '--work-dir',
                              tmp_path / 'work', '--check-data', 'all'], monkeypatch)
    assert '101/101' in capsys.readouterr().out  # the progress bar
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')  # the data check comes first
    with pytest.raises(ValueError, match=everything):
        run_tool('test.py', [tmp_path / 'config.py', checkpoint, '--work-dir',
                             tmp_path / 'work', '--check-data', 'all',
                             '--cfg-options', 'test_dataloader.dataset.ann_file='
                             'annotations/instances_train.json',
                             'test_dataloader.dataset.data_prefix.img=train/'], monkeypatch)


def load_image(results: dict) -> dict:
    return TRANSFORMS.build(dict(type='CheckedLoadImageFromFile'))(results)


@pytest.mark.parametrize('damage', ['truncated', 'empty'])
def test_corrupt_image_met_in_training(broken: Path, damage: str) -> None:
    image = sorted((broken / 'train').iterdir())[1]
    image.write_bytes(image.read_bytes()[:500] if damage == 'truncated' else b'')
    message = (rf"image '{image}' \(id 7\) cannot be read or decoded \(.*\); it is truncated "
               r'or corrupt\. `tools/train\.py CONFIG --check-data all` lists every unreadable '
               r'image of the config before training')
    with pytest.raises(UnreadableImageError, match=message):
        load_image(dict(img_path=str(image), img_id=7))
    # From a dataloader worker, the error keeps its type and ends with the message.
    loader = DataLoader([dict(img_path=str(image), img_id=7)], num_workers=1,
                        collate_fn=lambda batch: [load_image(r) for r in batch])
    with pytest.raises(UnreadableImageError, match=message + r'\n$') as caught:
        next(iter(loader))
    assert 'DataLoader worker' in str(caught.value)

@pytest.mark.parametrize('damage', ['truncated', 'garbage'])
def test_corrupt_or_truncated_checkpoint(tmp_path: Path, damage: str) -> None:
    path = tmp_path / 'model.pth'
    torch.save({'state_dict': build().state_dict(), 'meta': {}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == 'truncated' else b'\x00garbage' * 64)
    # mmengine's loader, as resume, load_from and init_cfg use it.
    with pytest.raises(ValueError, match=rf"'{path}' is not a readable checkpoint \(truncated "
                                         r'or corrupt\)'):
        _load_checkpoint(str(path))


@pytest.mark.parametrize('meta, message', [
    ({'epoch': 1, 'iter': 10**9}, r'meta\.iter 1000000000 is beyond the schedule of this run '
                                  r'\(max_iters 2\), so resuming would train nothing'),
    ({'epoch': 1, 'iter': 1e9}, r'meta\.iter must be an integer >= 0, got 1000000000\.0'),
    ({'epoch': '1', 'iter': 1}, r"meta\.epoch must be an integer >= 0, got '1'"),
    ({'epoch': 0, 'iter': 0, 'seed': 2**40}, r'meta\.seed is 1099511627776; allowed: an '
                                             r'integer from 0 to 2\*\*32 - 1'),
])
@pytest.mark.slow
def test_resuming_a_checkpoint_with_a_bad_meta(data: Path, tmp_path: Path, monkeypatch,
                                               meta: dict, message: str) -> None:
    config = write_config(tmp_path / 'config.py', data, 'train_cfg = dict(max_epochs=2)\n')
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    checkpoint = work_dir / 'epoch_1.pth'
    model = build_adaptive_model(Config.fromfile(str(config)))
    hub = {'log_scalars': {}, 'runtime_info': {}, 'resumed_keys': {}}
    torch.save({'meta': meta, 'state_dict': model.state_dict(), 'message_hub': hub}, checkpoint)
    with pytest.raises(ValueError, match=rf"checkpoint '{checkpoint}': {message}"):
        run_tool('train.py', [config, '--work-dir', work_dir, '--resume', checkpoint],
                 monkeypatch)
    (work_dir / 'last_checkpoint').write_text(str(checkpoint))  # automatic resume
    with pytest.raises(ValueError, match=rf"checkpoint '{checkpoint}': {message}"):
        run_tool('train.py', [config, '--work-dir', work_dir, '--resume'], monkeypatch)
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']


def test_checkpoint_of_another_architecture(data: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': build().state_dict(), 'meta': {}}, other)
    # tools/test.py refuses it, naming the first weight of the model it lacks.
    with pytest.raises(ValueError, match=rf"checkpoint '{other}' does not fit MaskRCNN: the "
                                         r"model's 'backbone\.conv1\.weight' is not in it "
                                         r'\(\d+ missing, 6 unexpected, 0 reshaped'):
        run_tool('test.py', [write_config(tmp_path / 'config.py', data), other,
                             '--work-dir', tmp_path / 'work'], monkeypatch)
    # Same names, another shape: the shapes are named.
    state = build().state_dict()
    state['fc.weight'] = state['fc.weight'][:2]
    with pytest.raises(ValueError, match=r"'fc\.weight' has shape \(2, 32\) in it and \(4, 32\) "
                                         r'in the model \(0 missing, 0 unexpected, 1 reshaped'):
        check_state_dict_fits(build(), state)


def test_non_finite_loss_in_one_configuration() -> None:
    def poison_smallest(model: torch.nn.Module) -> None:
        model.fc.register_forward_hook(
            lambda _module, _args, out: out * float('nan') if model.width < 0.3 else out)

    model = build()
    poison_smallest(model)
    step = MutualTrainStep.from_config(VIDEO_MUTUAL, model)
    smallest = step.sampler.cohort(0)[-1]
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(NonFiniteLossError, match=rf'non-finite loss nan at configuration '
                                                 rf'{smallest.name} .*set '
                                                 r'mutual\.skip_nonfinite=True'):
        step(model, make_batches(1, 2)[0], optim_wrapper, 0)

    model = build()
    poison_smallest(model)
    before = [p.detach().clone() for p in model.parameters()]
    step = MutualTrainStep.from_config(dict(VIDEO_MUTUAL, skip_nonfinite=True), model)
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = step(model, make_batches(1, 2)[0], optim_wrapper, 0)
    assert log_vars['skipped'].item() == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
