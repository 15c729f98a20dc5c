"""Batch rescalers: a preprocessed stock mmdet batch resized with its annotations, and video."""
import copy
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import DATASETS, MODELS
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

import mutualnet_mm  # noqa: F401  (registers the engine components)
from mutualnet_mm.datasets import COCO_SHAPES_CLASSES, generate_coco_shapes
from mutualnet_mm.engine import DetBatchRescaler, SubnetConfig, VideoBatchRescaler
from mutualnet_mm.registry import MUTUAL

# Two images of different sizes (W x H: 90 x 50 and 70 x 40) in one batch padded to 64 x 96.
SIZES = ((90, 50), (70, 40))
BATCH_SHAPE = (64, 96)
# 0.7 gives different x and y factors after rounding (45/64 and 67/96).
SCALES = (0.5, 0.75, 0.7)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('coco_shapes')
    generate_coco_shapes(root, num_train=4, num_val=2, image_size=64)
    return root


def build_batch(root: Path, bitmap_masks: bool) -> dict:
    """A batch as the stock mmdet pipeline and ``DetDataPreprocessor`` produce it."""
    init_default_scope('mmdet')
    samples = []
    for index, size in enumerate(SIZES):
        dataset = DATASETS.build(dict(
            type='CocoDataset', data_root=str(root), ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'), metainfo=dict(classes=COCO_SHAPES_CLASSES),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
                     poly2mask=bitmap_masks),
                dict(type='Resize', scale=size, keep_ratio=False),
                dict(type='PackDetInputs'),
            ]))
        samples.append(dataset[index])
    preprocessor = MODELS.build(dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_mask=True, pad_size_divisor=32))
    batch = preprocessor(pseudo_collate(samples), True)
    assert tuple(batch['inputs'].shape[-2:]) == BATCH_SHAPE
    return batch


@pytest.fixture(scope='module', params=[False, True], ids=['polygons', 'bitmaps'])
def batch(request, data_root: Path) -> dict:
    return build_batch(data_root, request.param)


def factors(scale: float) -> tuple:
    """The factors (y, x) the batch tensor is resized by, and its new unpadded size."""
    new_h, new_w = round(BATCH_SHAPE[0] * scale), round(BATCH_SHAPE[1] * scale)
    return new_h / BATCH_SHAPE[0], new_w / BATCH_SHAPE[1], (new_h, new_w)


def mask_arrays(masks, shape: tuple) -> np.ndarray:
    """The masks rasterized on a canvas of the batch tensor's ``shape``."""
    arrays = masks.to_ndarray() if isinstance(masks, PolygonMasks) else masks.masks
    canvas = np.zeros((len(arrays), *shape), bool)
    canvas[:, :arrays.shape[1], :arrays.shape[2]] = arrays.astype(bool)
    return canvas


def centroid(mask: np.ndarray) -> np.ndarray:
    """The centre of mass (x, y) of a mask, in pixel-edge coordinates."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def interior(mask: np.ndarray) -> np.ndarray:
    """The pixels of a mask whose 8 neighbours are in it too."""
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The pixel-edge bounding box (x1, y1, x2, y2) of a mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


@pytest.mark.parametrize('scale', SCALES)
def test_shapes_and_boxes_follow_the_tensor(batch: dict, scale: float) -> None:
    scale_y, scale_x, (new_h, new_w) = factors(scale)
    inputs, samples = DetBatchRescaler(size_divisor=32)(
        batch['inputs'], batch['data_samples'], SubnetConfig(0.5, scale))
    padded = (math.ceil(new_h / 32) * 32, math.ceil(new_w / 32) * 32)
    assert inputs.shape == (2, 3, *padded)
    assert padded[0] % 32 == 0 and padded[1] % 32 == 0
    expected = F.interpolate(batch['inputs'], size=(new_h, new_w), mode='bilinear',
                             align_corners=False)
    assert torch.equal(inputs[..., :new_h, :new_w], expected)
    assert inputs[..., new_h:, :].abs().sum() == 0 and inputs[..., new_w:].abs().sum() == 0
    for old, new in zip(batch['data_samples'], samples):
        height, width = old.img_shape
        assert new.img_shape == (round(height * scale_y), round(width * scale_x))
        assert new.pad_shape == (round(old.pad_shape[0] * scale_y),
                                 round(old.pad_shape[1] * scale_x))
        assert new.batch_input_shape == padded
        assert new.ori_shape == old.ori_shape
        assert new.scale_factor == pytest.approx(
            (old.scale_factor[0] * scale_x, old.scale_factor[1] * scale_y))
        box_factors = torch.tensor([scale_x, scale_y, scale_x, scale_y])
        torch.testing.assert_close(new.gt_instances.bboxes, old.gt_instances.bboxes * box_factors)
        assert torch.equal(new.gt_instances.labels, old.gt_instances.labels)


@pytest.mark.parametrize('scale', SCALES)
def test_masks_line_up_with_boxes_and_image(batch: dict, scale: float) -> None:
    scale_y, scale_x, _ = factors(scale)
    inputs, samples = DetBatchRescaler()(batch['inputs'], batch['data_samples'],
                                         SubnetConfig(1.0, scale))
    checked = 0
    for index, (old, new) in enumerate(zip(batch['data_samples'], samples)):
        masks = new.gt_instances.masks
        assert type(masks) is type(old.gt_instances.masks)
        bitmaps = isinstance(masks, BitmapMasks)
        if bitmaps:  # padded to the batch, as the preprocessor does
            assert (masks.height, masks.width) == tuple(inputs.shape[-2:])
        else:
            assert (masks.height, masks.width) == (round(BATCH_SHAPE[0] * scale_y),
                                                   round(BATCH_SHAPE[1] * scale_x))
        old_masks = mask_arrays(old.gt_instances.masks, BATCH_SHAPE)
        new_masks = mask_arrays(masks, inputs.shape[-2:])
        assert len(new_masks) == len(old_masks)
        for old_mask, mask, box in zip(old_masks, new_masks, new.gt_instances.bboxes.numpy()):
            if mask.sum() < 12:  # a few pixels: rasterization decides everything
                continue
            # Inside the rescaled box (bitmaps went through two nearest-neighbour resizes).
            margin = 1.5 if bitmaps else 1.0
            x1, y1, x2, y2 = mask_box(mask)
            assert x1 >= box[0] - margin and y1 >= box[1] - margin
            assert x2 <= box[2] + margin and y2 <= box[3] + margin
            # Same place and size as the original mask, to sub-pixel precision.
            np.testing.assert_allclose(centroid(mask), centroid(old_mask) * (scale_x, scale_y),
                                       atol=1.0)
            assert 0.8 < mask.sum() / (old_mask.sum() * scale_x * scale_y) < 1.25
            # The object's colour inside the mask is what it was before rescaling, far
            # from the colour around it (a shifted or mis-scaled mask mixes the two).
            # Interiors only: bilinear resizing blends the outline with the background.
            core, old_core = interior(mask), interior(old_mask)
            x1, y1, x2, y2 = mask_box(old_mask).astype(int)
            around = np.zeros_like(old_mask)
            around[y1:y2, x1:x2] = True
            around &= ~old_mask
            if min(core.sum(), old_core.sum()) < 6 or around.sum() < 12:
                continue
            old_image = batch['inputs'][index].numpy()
            inside = old_image[:, old_core].mean(axis=1)
            contrast = np.linalg.norm(inside - old_image[:, around].mean(axis=1))
            new_inside = inputs[index].numpy()[:, core].mean(axis=1)
            assert np.linalg.norm(new_inside - inside) < 0.2 * contrast
            checked += 1
    assert checked >= 3


def test_the_original_batch_is_untouched(batch: dict) -> None:
    before = copy.deepcopy(batch)
    for scale in SCALES:
        DetBatchRescaler()(batch['inputs'], batch['data_samples'], SubnetConfig(1.0, scale))
    assert torch.equal(batch['inputs'], before['inputs'])
    for old, now in zip(before['data_samples'], batch['data_samples']):
        assert now.metainfo == old.metainfo
        assert torch.equal(now.gt_instances.bboxes, old.gt_instances.bboxes)
        old_masks, masks = old.gt_instances.masks, now.gt_instances.masks
        assert (masks.height, masks.width) == (old_masks.height, old_masks.width)
        if isinstance(masks, BitmapMasks):
            assert np.array_equal(masks.masks, old_masks.masks)
        else:
            for polys, old_polys in zip(masks.masks, old_masks.masks):
                assert all(np.array_equal(p, q) for p, q in zip(polys, old_polys))


def test_full_scale_returns_the_batch_and_registry_builds() -> None:
    rescaler = MUTUAL.build(dict(type='DetBatchRescaler', size_divisor=64))
    assert isinstance(rescaler, DetBatchRescaler) and rescaler.size_divisor == 64
    inputs = torch.randn(1, 3, 64, 64)
    samples = []
    assert rescaler(inputs, samples, SubnetConfig(0.25, 1.0)) == (inputs, samples)
    small, _ = rescaler(inputs, samples, SubnetConfig(0.25, 0.5))
    assert small.shape == (1, 3, 64, 64)  # 32 x 32 padded to the divisor 64


def test_video_rescaler_resizes_frames_and_subsamples_time() -> None:
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(2, 3, 3, 8, 16, 24, generator=generator)  # N, V, C, T, H, W
    samples = [object(), object()]
    rescaler = MUTUAL.build(dict(type='VideoBatchRescaler'))
    out, out_samples = rescaler(clips, samples, SubnetConfig(0.5, 0.5, frames=4))
    assert out.shape == (2, 3, 3, 4, 8, 12)
    assert out_samples is samples
    chosen = clips[:, :, :, [0, 2, 5, 7]]  # uniform over 8 frames
    for t in range(4):
        frame = F.interpolate(chosen[:, :, :, t].reshape(6, 3, 16, 24), size=(8, 12),
                              mode='bilinear', align_corners=False)
        torch.testing.assert_close(out[:, :, :, t], frame.reshape(2, 3, 3, 8, 12))
    spatial, _ = rescaler(clips, samples, SubnetConfig(1.0, 0.75))
    assert spatial.shape == (2, 3, 3, 8, 12, 18)
    same, _ = rescaler(clips, samples, SubnetConfig(1.0, 1.0, frames=8))
    assert same is clips


def test_video_rescaler_rejects_bad_inputs() -> None:
    rescaler = VideoBatchRescaler()
    with pytest.raises(ValueError, match=r'\(N, views, C, T, H, W\), got \(2, 3, 8, 16, 16\)'):
        rescaler(torch.zeros(2, 3, 8, 16, 16), [], SubnetConfig(1.0, 0.5))
    with pytest.raises(ValueError, match='cannot sample 16 frames from clips of 8'):
        rescaler(torch.zeros(1, 1, 3, 8, 16, 16), [], SubnetConfig(1.0, 1.0, frames=16))
