"""Batch rescalers: one preprocessed batch, resized to a configuration's scale.

A rescaler returns new inputs and new data samples: the originals are left untouched,
so every pass of an iteration starts from the same preprocessed batch. Each task
declares its rescaler (:mod:`mutualnet_mm.tasks`): that is how a model gets its default
one (:func:`default_rescaler`), with no test on module names.
"""
import math
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import MUTUAL, build_component
from ..tasks import task_of
from .subnet import SubnetConfig


def _scaled(size: Sequence[int], scale_y: float, scale_x: float) -> Tuple[int, int]:
    return max(1, round(size[0] * scale_y)), max(1, round(size[1] * scale_x))


@MUTUAL.register_module()
class DetBatchRescaler:
    """Rescales a detection batch: images, boxes, masks and every shape in the metainfo.

    The batch tensor is resized as a whole (bilinear, the same crop at every scale) and
    padded again to ``size_divisor``; boxes and polygon masks are multiplied by the exact
    factors the tensor was resized by, bitmap masks are resized to match; ``img_shape``,
    ``pad_shape``, ``batch_input_shape`` and ``scale_factor`` follow, so predictions map
    back to the original image as usual.

    Args:
        size_divisor: Pad the resized batch to a multiple of this (as the data
            preprocessor does).
        pad_value: Value of the padding in the normalized input.
    """

    def __init__(self, size_divisor: int = 32, pad_value: float = 0.0) -> None:
        self.size_divisor = size_divisor
        self.pad_value = pad_value

    def __call__(self, inputs: Tensor, data_samples: list,
                 config: SubnetConfig) -> Tuple[Tensor, list]:
        if config.scale == 1.0:
            return inputs, data_samples
        height, width = inputs.shape[-2:]
        new_h, new_w = _scaled((height, width), config.scale, config.scale)
        resized = F.interpolate(inputs, size=(new_h, new_w), mode='bilinear',
                                align_corners=False)
        pad_h = math.ceil(new_h / self.size_divisor) * self.size_divisor
        pad_w = math.ceil(new_w / self.size_divisor) * self.size_divisor
        resized = F.pad(resized, (0, pad_w - new_w, 0, pad_h - new_h), value=self.pad_value)
        scale_y, scale_x = new_h / height, new_w / width
        samples = [self._rescale_sample(sample, scale_y, scale_x, (height, width),
                                        (pad_h, pad_w)) for sample in data_samples or []]
        return resized, samples

    def _rescale_sample(self, sample, scale_y: float, scale_x: float,
                        batch_shape: Tuple[int, int], new_batch_shape: Tuple[int, int]):
        meta = dict(sample.metainfo)
        for key in ('img_shape', 'pad_shape'):
            if key in meta:
                meta[key] = _scaled(meta[key], scale_y, scale_x)
        meta['batch_input_shape'] = new_batch_shape
        factor_x, factor_y = meta.get('scale_factor', (1.0, 1.0))
        meta['scale_factor'] = (factor_x * scale_x, factor_y * scale_y)
        new = type(sample)(metainfo=meta)
        for key in sample.keys():
            value = getattr(sample, key)
            if key in ('gt_instances', 'ignored_instances'):
                value = self._rescale_instances(value, scale_y, scale_x, batch_shape,
                                                new_batch_shape)
            setattr(new, key, value)
        return new

    @staticmethod
    def _rescale_instances(instances, scale_y: float, scale_x: float,
                           batch_shape: Tuple[int, int], new_batch_shape: Tuple[int, int]):
        new = instances.new()  # shares every field; replaced ones below
        if 'bboxes' in instances:
            boxes = instances.bboxes
            if isinstance(boxes, Tensor):
                new.bboxes = boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
            else:  # an mmdet box type
                boxes = boxes.clone()
                boxes.rescale_((scale_x, scale_y))
                new.bboxes = boxes
        if 'masks' in instances:
            new.masks = _rescale_masks(instances.masks, scale_y, scale_x, batch_shape,
                                       new_batch_shape)
        return new


def _rescale_masks(masks, scale_y: float, scale_x: float, batch_shape: Tuple[int, int],
                   new_batch_shape: Tuple[int, int]):
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    if isinstance(masks, PolygonMasks):  # flat x, y, x, y, ... coordinates
        polygons = [[poly * np.tile([scale_x, scale_y], len(poly) // 2) for poly in polys]
                    for polys in masks.masks]
        return PolygonMasks(polygons, *_scaled((masks.height, masks.width), scale_y, scale_x))
    if isinstance(masks, BitmapMasks):
        resized = masks.resize(_scaled((masks.height, masks.width), scale_y, scale_x))
        if (masks.height, masks.width) == tuple(batch_shape):  # padded to the batch
            resized = resized.pad(new_batch_shape, pad_val=0)
        return resized
    raise TypeError(f'cannot rescale masks of type {type(masks).__name__}')


@MUTUAL.register_module()
class VideoBatchRescaler:
    """Rescales a video batch ``(N, views, C, T, H, W)`` spatially (and in time).

    Spatial size follows ``config.scale`` (bilinear per frame); with ``config.frames``
    set, frames are subsampled uniformly to that count. Labels are unchanged.
    """

    def __call__(self, inputs: Tensor, data_samples: list,
                 config: SubnetConfig) -> Tuple[Tensor, list]:
        if inputs.dim() != 6:
            raise ValueError('VideoBatchRescaler expects inputs of shape '
                             f'(N, views, C, T, H, W), got {tuple(inputs.shape)}')
        frames = inputs.shape[3]
        if config.frames is not None and config.frames != frames:
            if not 0 < config.frames <= frames:
                raise ValueError(f'cannot sample {config.frames} frames from clips of '
                                 f'{frames}')
            index = torch.linspace(0, frames - 1, config.frames).round().long()
            inputs = inputs.index_select(3, index.to(inputs.device))
        if config.scale != 1.0:
            n, views, channels, t, height, width = inputs.shape
            new_size = _scaled((height, width), config.scale, config.scale)
            flat = inputs.permute(0, 1, 3, 2, 4, 5).reshape(-1, channels, height, width)
            flat = F.interpolate(flat, size=new_size, mode='bilinear', align_corners=False)
            inputs = flat.reshape(n, views, t, channels, *new_size).permute(0, 1, 3, 2, 4, 5)
            inputs = inputs.contiguous()
        return inputs, data_samples


@MUTUAL.register_module()
class ClsBatchRescaler:
    """Rescales an image classification batch ``(N, C, H, W)``; labels are unchanged.

    The reference's rule: every resolution is the same crop, bilinearly downsampled
    (224 -> 192, 160, 128 are scales 6/7, 5/7, 4/7).

    Args:
        align_corners: Passed to ``F.interpolate`` (the reference: True, in training and
            evaluation; False matches an image resize in a test pipeline more closely).
    """

    def __init__(self, align_corners: bool = False) -> None:
        self.align_corners = align_corners

    def __call__(self, inputs: Tensor, data_samples: list,
                 config: SubnetConfig) -> Tuple[Tensor, list]:
        if inputs.dim() != 4:
            raise ValueError('ClsBatchRescaler expects inputs of shape (N, C, H, W), got '
                             f'{tuple(inputs.shape)}')
        if config.scale == 1.0:
            return inputs, data_samples
        size = _scaled(inputs.shape[-2:], config.scale, config.scale)
        return F.interpolate(inputs, size=size, mode='bilinear',
                             align_corners=self.align_corners), data_samples


def with_loaded_annotations(predictions: Sequence, originals: Sequence) -> list:
    """Predictions on rescaled samples, carried over to the samples as loaded.

    Returns copies of ``originals`` with the fields the model added to the rescaled
    samples (its predictions, mapped back to the original image), so that visualization
    hooks and metrics that read the ground truth from the samples (mmdet's VOC metric)
    see it as the dataset loaded it, in the frame of the predictions.

    Args:
        predictions: The model's outputs, one per sample.
        originals: The samples before rescaling, in the same order.
    """
    merged = []
    for prediction, original in zip(predictions, originals):
        sample, loaded = original.new(), set(original.keys())
        for key in prediction.keys():
            if key not in loaded:
                setattr(sample, key, getattr(prediction, key))
        merged.append(sample)
    return merged


def default_rescaler(model) -> dict:
    """The config of the rescaler the model's task declares (:func:`~..tasks.task_of`)."""
    return dict(type=task_of(model).rescaler)


def build_rescaler(cfg) -> object:
    """Build a rescaler from a config dict (or return an already built one)."""
    return build_component(cfg) if isinstance(cfg, dict) else cfg


__all__: List[str] = ['ClsBatchRescaler', 'DetBatchRescaler', 'VideoBatchRescaler',
                      'build_rescaler', 'default_rescaler', 'with_loaded_annotations']
