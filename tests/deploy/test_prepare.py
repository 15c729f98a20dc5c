"""``mutualnet_mm.apis.prepare``: mmdet's, mmaction2's and mmpretrain's inference APIs and
inferencers at a configuration."""
import copy
import glob
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmengine.config import Config

from mutualnet_mm.apis import prepare
from mutualnet_mm.datasets.motion_clips import generate_motion_clips
from mutualnet_mm.deploy import (
    build_adaptive_model,
    calibrate_bn_stats,
    calibration_loader,
    export_subnet,
    save_bn_stats,
)
from mutualnet_mm.deploy.adaptive import task_rescaler
from mutualnet_mm.engine import SubnetConfig
from mutualnet_mm.ops import get_widths
from mutualnet_mm.reliability.fingerprint import weights_fingerprint

from .demo import REPO

NUM_BATCHES = 2
CONFIG = SubnetConfig(0.5, 0.5)


@pytest.fixture(scope='module')
def batches(demo_cfg) -> list:
    loader = calibration_loader(demo_cfg)
    return [batch for _, batch in zip(range(NUM_BATCHES), loader)]


@pytest.fixture(scope='module')
def image(data_root) -> str:
    return sorted(glob.glob(osp.join(data_root, 'val', '*.jpg')))[0]


@pytest.fixture(scope='module')
def exported(demo_cfg, demo_checkpoint, batches, tmp_path_factory):
    """The stock model of CONFIG, exported with the same calibration batches."""
    model = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    out = str(tmp_path_factory.mktemp('exported'))
    paths = export_subnet(model, demo_cfg, CONFIG, out, batches, NUM_BATCHES)
    return init_detector(paths['config'], paths['checkpoint'], device='cpu')


def same_predictions(got, want) -> None:
    got, want = got.pred_instances, want.pred_instances
    assert len(got) == len(want) > 0
    torch.testing.assert_close(got.bboxes, want.bboxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(got.scores, want.scores, atol=1e-5, rtol=0)
    assert torch.equal(got.labels, want.labels)


def test_inference_detector_after_prepare_equals_the_exported_model(
        demo_cfg, demo_checkpoint, batches, image, exported) -> None:
    model = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    assert prepare(model, 0.5, 0.5, calibration=batches, num_batches=NUM_BATCHES) == CONFIG
    same_predictions(inference_detector(model, image), inference_detector(exported, image))


def test_det_inferencer_after_prepare_equals_the_exported_model(
        demo_cfg, demo_checkpoint, batches, image, exported) -> None:
    # Preparing the inferencer's model alone leaves the pipeline it built at full size.
    inferencer = DetInferencer(copy.deepcopy(demo_cfg), demo_checkpoint, device='cpu',
                               show_progress=False)  # sets mmdet's registry scope
    want = inference_detector(exported, image)
    prepare(inferencer.model, 0.5, 0.5, calibration=batches, num_batches=NUM_BATCHES)
    full_size = inferencer(image, return_datasamples=True)['predictions'][0]
    assert full_size.metainfo['img_shape'] != want.metainfo['img_shape']

    inferencer = DetInferencer(copy.deepcopy(demo_cfg), demo_checkpoint, device='cpu',
                               show_progress=False)
    assert prepare(inferencer, 0.5, 0.5, calibration=batches,
                   num_batches=NUM_BATCHES) == CONFIG
    got = inferencer(image, return_datasamples=True)['predictions'][0]
    assert got.metainfo['img_shape'] == want.metainfo['img_shape']
    same_predictions(got, want)
    # The model's config is the stock one at the scale: inference_detector agrees.
    same_predictions(inference_detector(inferencer.model, image), want)


def test_prepare_from_a_bn_stats_file(demo_cfg, demo_checkpoint, batches, image, exported,
                                      tmp_path) -> None:
    model = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    stats = calibrate_bn_stats(model, batches, [SubnetConfig(1.0, 1.0), CONFIG],
                               task_rescaler(model, demo_cfg), NUM_BATCHES)
    save_bn_stats(str(tmp_path / 'bn_stats.pth'), stats, weights_fingerprint(model))
    fresh = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    prepare(fresh, 0.5, 0.5, calibration=str(tmp_path / 'bn_stats.pth'))
    same_predictions(inference_detector(fresh, image), inference_detector(exported, image))
    with pytest.raises(KeyError, match=r"no BN statistics of w0.25_s1; it holds \[.w1.00_s1"):
        prepare(fresh, 0.25, calibration=str(tmp_path / 'bn_stats.pth'))
    with torch.no_grad():
        next(fresh.parameters()).add_(1.0)  # other weights: the statistics do not belong
    with pytest.raises(ValueError, match='belongs to another checkpoint'):
        prepare(fresh, 0.5, 0.5, calibration=str(tmp_path / 'bn_stats.pth'))


def test_prepare_with_decoupled_widths_equals_its_export(demo_cfg, demo_checkpoint, batches,
                                                        image, tmp_path) -> None:
    config = SubnetConfig(0.25, 0.5, head_width=0.5)
    model = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    paths = export_subnet(model, demo_cfg, config, str(tmp_path), batches, NUM_BATCHES)
    exported = init_detector(paths['config'], paths['checkpoint'], device='cpu')
    fresh = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    assert prepare(fresh, 0.25, 0.5, calibration=batches, num_batches=NUM_BATCHES,
                   head_width=0.5) == config
    assert get_widths(fresh) == (0.25, 0.5)
    same_predictions(inference_detector(fresh, image), inference_detector(exported, image))
    with pytest.raises(ValueError, match=r'width 0.1 is outside the range \[0.25, 1\] '
                                         r'allowed by MaskRCNN \(head width\)'):
        prepare(fresh, 0.5, head_width=0.1, calibration=batches)


def test_prepare_again_does_not_compound_the_scale(demo_cfg, demo_checkpoint, batches):
    model = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    original = [t for t in model.cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    prepare(model, 0.5, 0.5, calibration=batches, num_batches=1)
    resize = [t for t in model.cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    assert resize[0].scale == tuple(s // 2 for s in original[0].scale)
    prepare(model, 1.0, 1.0, calibration=batches, num_batches=1)
    resize = [t for t in model.cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    assert resize[0].scale == original[0].scale


def test_prepare_errors(demo_cfg, demo_checkpoint, batches) -> None:
    model = init_detector(demo_cfg, demo_checkpoint, device='cpu')
    with pytest.raises(ValueError, match=r'width 0.1 is outside the range \[0.25, 1\]'):
        prepare(model, 0.1, calibration=batches)
    with pytest.raises(ValueError, match=r'prepare.scales must hold numbers in \(0, 4\]'):
        prepare(model, 0.5, 5.0, calibration=batches)
    del model.cfg
    with pytest.raises(ValueError, match='model.cfg'):
        prepare(model, 0.5, calibration=batches)
    with pytest.raises(ValueError, match='a model or an OpenMMLab inferencer, got str'):
        prepare('model', 0.5, calibration=batches)


@pytest.fixture(scope='module')
def video_setup(tmp_path_factory) -> dict:
    """The X3D demo on 6 generated clips, a random checkpoint and calibration batches."""
    root = tmp_path_factory.mktemp('video')
    generate_motion_clips(root / 'clips', num_train=4, num_val=2, size=32, frames=16)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'x3d_mutual_demo.py'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].update(batch_size=2, num_workers=0, persistent_workers=False)
        split = 'train' if key == 'train_dataloader' else 'val'
        cfg[key].dataset.update(data_prefix=dict(video=str(root / 'clips')),
                                ann_file=str(root / 'clips' / f'{split}_list.txt'))
    torch.manual_seed(0)
    checkpoint = str(root / 'epoch_1.pth')
    torch.save({'state_dict': build_adaptive_model(cfg).state_dict()}, checkpoint)
    batches = [batch for _, batch in zip(range(NUM_BATCHES), calibration_loader(cfg))]
    video = sorted((root / 'clips').glob('**/*.mp4'))[0]
    return dict(cfg=cfg, checkpoint=checkpoint, batches=batches, video=str(video),
                root=root)


def test_inference_recognizer_after_prepare_equals_the_exported_model(video_setup) -> None:
    from mmaction.apis import inference_recognizer, init_recognizer
    cfg, batches = video_setup['cfg'], video_setup['batches']
    model = init_recognizer(copy.deepcopy(cfg), video_setup['checkpoint'], device='cpu')
    config = SubnetConfig(0.5, 0.75)
    paths = export_subnet(model, cfg, config, str(video_setup['root'] / 'exported'), batches,
                          NUM_BATCHES)
    exported = init_recognizer(paths['config'], paths['checkpoint'], device='cpu')
    fresh = init_recognizer(copy.deepcopy(cfg), video_setup['checkpoint'], device='cpu')
    want = inference_recognizer(exported, video_setup['video']).pred_score
    unprepared = inference_recognizer(fresh, video_setup['video']).pred_score
    assert (unprepared - want).abs().max() > 1e-3  # the test can tell them apart
    assert prepare(fresh, 0.5, 0.75, calibration=batches, num_batches=NUM_BATCHES) == config
    got = inference_recognizer(fresh, video_setup['video']).pred_score
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_mmaction2_inferencer_after_prepare_equals_the_exported_model(video_setup) -> None:
    from mmaction.apis import MMAction2Inferencer, inference_recognizer, init_recognizer
    cfg, batches = video_setup['cfg'], video_setup['batches']
    model = init_recognizer(copy.deepcopy(cfg), video_setup['checkpoint'], device='cpu')
    config = SubnetConfig(0.5, 0.75)
    paths = export_subnet(model, cfg, config, str(video_setup['root'] / 'exported_inf'),
                          batches, NUM_BATCHES)
    exported = init_recognizer(paths['config'], paths['checkpoint'], device='cpu')
    want = inference_recognizer(exported, video_setup['video']).pred_score
    inferencer = MMAction2Inferencer(copy.deepcopy(cfg), video_setup['checkpoint'],
                                     device='cpu')
    assert prepare(inferencer, 0.5, 0.75, calibration=batches,
                   num_batches=NUM_BATCHES) == config
    got = inferencer.actionrecog_inferencer(video_setup['video'], return_datasamples=True)
    torch.testing.assert_close(got['predictions'][0].pred_score, want, atol=1e-5, rtol=0)


@pytest.fixture(scope='module')
def cls_setup(tmp_path_factory) -> dict:
    """The digits classifier demo on 16 generated images, a random checkpoint and
    calibration batches."""
    root = tmp_path_factory.mktemp('cls')
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for label in ('0', '1'):
            for i in range(4):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                mmcv.imwrite(image, str(root / 'digits' / split / label / f'{i}.png'))
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'resnet18_mutual_digits.py'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].batch_size = 4
        cfg[key].dataset.data_root = str(root / 'digits')
    torch.manual_seed(0)
    checkpoint = str(root / 'epoch_1.pth')
    torch.save({'meta': {'dataset_meta': {'classes': [str(c) for c in range(10)]}},
                'state_dict': build_adaptive_model(cfg).state_dict()}, checkpoint)
    batches = [batch for _, batch in zip(range(NUM_BATCHES), calibration_loader(cfg))]
    return dict(cfg=cfg, checkpoint=checkpoint, batches=batches, root=root,
                image=str(root / 'digits' / 'val' / '1' / '0.png'))


def test_mmpretrain_inferencer_and_model_after_prepare_equal_the_exported_model(
        cls_setup) -> None:
    from mmpretrain.apis import ImageClassificationInferencer, get_model
    cfg, checkpoint, batches = cls_setup['cfg'], cls_setup['checkpoint'], cls_setup['batches']
    image = cls_setup['image']
    model = get_model(copy.deepcopy(cfg), pretrained=checkpoint, device='cpu')
    paths = export_subnet(model, cfg, CONFIG, str(cls_setup['root'] / 'exported'), batches,
                          NUM_BATCHES)
    exported = get_model(paths['config'], pretrained=paths['checkpoint'], device='cpu')
    want = ImageClassificationInferencer(exported)(image)[0]['pred_scores']

    inferencer = ImageClassificationInferencer(copy.deepcopy(cfg), pretrained=checkpoint,
                                               device='cpu')
    unprepared = inferencer(image)[0]['pred_scores']
    assert np.abs(unprepared - want).max() > 1e-3  # the test can tell them apart
    assert prepare(inferencer, 0.5, 0.5, calibration=batches,
                   num_batches=NUM_BATCHES) == CONFIG
    np.testing.assert_allclose(inferencer(image)[0]['pred_scores'], want, atol=1e-5, rtol=0)

    fresh = get_model(copy.deepcopy(cfg), pretrained=checkpoint, device='cpu')
    assert prepare(fresh, 0.5, 0.5, calibration=batches, num_batches=NUM_BATCHES) == CONFIG
    got = ImageClassificationInferencer(fresh)(image)[0]['pred_scores']  # built after prepare
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
