"""Demo data in COCO "instances" format: shapes on textured backgrounds.

Five shape classes are drawn with random colours (the colour says nothing about the class),
rotations and sizes (from a few pixels to most of the image, so input resolution matters)
over textured backgrounds. Objects occlude each other; every annotation describes the
visible part only, as polygons traced from the visible mask. mmdet's stock ``CocoDataset``
and ``CocoMetric`` read the files unchanged.

Layout written under ``root``::

    train/000000.jpg ...   val/000000.jpg ...
    annotations/instances_train.json   annotations/instances_val.json
    meta.json              (the generation parameters; same parameters -> nothing to do)

Every image depends only on ``(seed, split, index)``: the same seed gives byte-identical
JSON and images, and image ``i`` does not change when the split grows.
"""
import json
import math
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..checks import check_int

COCO_SHAPES_CLASSES = ('circle', 'square', 'triangle', 'star', 'cross')

_FORMAT_VERSION = 1
_SPLITS = ('train', 'val')
_SUPERSAMPLE = 4  # masks are drawn at this multiple of the image resolution
_MIN_IMAGE_SIDE = 32
_MIN_OBJECT_DIAMETER = 3.0  # pixels
_MIN_FRAGMENT_AREA = 4.0  # pixels^2: a visible piece smaller than this is not allowed
_PLACEMENT_TRIES = 20
_COLOUR_TRIES = 20
_MIN_COLOUR_DISTANCE = 90.0  # RGB distance between an object and what lies below it
_JPEG_QUALITY = 95
_POLYGON_TOLERANCE = 0.25  # pixels, polygon simplification


def _regular_outline(radii: Sequence[float]) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, len(radii), endpoint=False) - np.pi / 2
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.asarray(radii)[:, None]


def _cross_outline(half_width: float = 0.3) -> np.ndarray:
    quarter = np.array([(-half_width, -1.0), (half_width, -1.0), (half_width, -half_width)])
    quarter_turn = np.array([[0.0, 1.0], [-1.0, 0.0]])  # (x, y) -> (-y, x)
    outline = np.concatenate([quarter @ np.linalg.matrix_power(quarter_turn, k)
                              for k in range(4)])
    return outline / np.linalg.norm(outline, axis=1).max()


# Outlines with circumradius 1, centred at the origin, in COCO_SHAPES_CLASSES order.
_OUTLINES = (
    _regular_outline([1.0] * 64),
    _regular_outline([1.0] * 4),
    _regular_outline([1.0] * 3),
    _regular_outline([1.0, 0.45] * 5),
    _cross_outline(),
)


def _check_arguments(num_train: int, num_val: int, image_size: Tuple[int, int], seed: int,
                     size_range: Tuple[float, float], objects_per_image: Tuple[int, int],
                     min_visible: float) -> None:
    check_int(num_train, 'num_train', 1)
    check_int(num_val, 'num_val', 1)
    check_int(seed, 'seed', 0)
    if min(image_size) < _MIN_IMAGE_SIDE:
        raise ValueError(f'image_size sides must be >= {_MIN_IMAGE_SIDE} pixels, '
                         f'got {image_size!r}')
    low, high = size_range
    if not 0 < low <= high <= 1:
        raise ValueError(f'size_range must satisfy 0 < low <= high <= 1, got {size_range!r}')
    if low * min(image_size) < _MIN_OBJECT_DIAMETER:
        raise ValueError(f'size_range low {low!r} gives objects under '
                         f'{_MIN_OBJECT_DIAMETER:g} pixels in a {image_size!r} image')
    fewest, most = objects_per_image
    if not (isinstance(fewest, int) and isinstance(most, int) and 1 <= fewest <= most):
        raise ValueError(f'objects_per_image must be integers with 1 <= low <= high, '
                         f'got {objects_per_image!r}')
    if not 0 < min_visible <= 1:
        raise ValueError(f'min_visible must be in (0, 1], got {min_visible!r}')


def _image_size_pair(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return image_size, image_size
    if (isinstance(image_size, (tuple, list)) and len(image_size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in image_size)):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f'image_size must be an int or a pair of ints (H, W), got {image_size!r}')


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A gradient with low-frequency blotches, a few soft blobs and lines, and pixel noise."""
    side = min(height, width)
    start, end = rng.uniform(40, 215, size=(2, 3))
    theta = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * math.cos(theta) + ys * math.sin(theta)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    image = start + (end - start) * ramp[..., None]
    blotches = rng.normal(0, 15, size=(5, 5, 3)).astype(np.float32)
    image += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    image = image.astype(np.float32)
    for _ in range(rng.integers(0, 4)):
        layer = image.copy()
        centre = tuple(int(v) for v in rng.uniform(0, 1, 2) * (width, height))
        axes = tuple(int(v) for v in rng.uniform(0.15, 0.4, 2) * side)
        cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    rng.uniform(0, 255, 3).tolist(), -1)
        blur = max(3.0, 0.08 * side)
        layer = cv2.GaussianBlur(layer, (0, 0), blur)
        image += 0.35 * (layer - image)
    for _ in range(rng.integers(0, 5)):
        layer = image.copy()
        ends = rng.uniform(-0.2, 1.2, size=(2, 2)) * (width, height)
        cv2.line(layer, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[1]),
                 rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
        image += rng.uniform(0.2, 0.45) * (layer - image)
    image += rng.normal(0, rng.uniform(3, 8), size=image.shape)
    return image


def _object_layer(rng: np.random.Generator, colour: np.ndarray, height: int,
                  width: int) -> np.ndarray:
    """A flat colour with a shading ramp and fine noise, covering the whole image."""
    theta = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs * math.cos(theta) + ys * math.sin(theta)) / min(height, width)
    shading = rng.uniform(0, 40) * (ramp - ramp.mean())
    noise = rng.normal(0, rng.uniform(2, 5), size=(height, width, 3))
    return (colour + shading[..., None] + noise).astype(np.float32)


def _pick_colour(rng: np.random.Generator, below: List[np.ndarray]) -> np.ndarray:
    """A random colour far from every colour in ``below`` (the best of a few draws)."""
    best, best_distance = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = rng.uniform(0, 255, 3)
        distance = min(float(np.linalg.norm(colour - other)) for other in below)
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= _MIN_COLOUR_DISTANCE:
            break
    return best


class _Shape:
    """One placed object: its outline and its full / visible masks at supersampled size."""

    def __init__(self, label: int, outline: np.ndarray, mask: np.ndarray) -> None:
        self.label = label
        self.outline = outline
        self.mask = mask
        self.visible = mask.copy()
        self.full_area = cv2.contourArea(outline.astype(np.float32)) * _SUPERSAMPLE ** 2


def _draw_mask(outline: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fill ``outline`` (pixel-edge coordinates) at the supersampled resolution."""
    mask = np.zeros((height * _SUPERSAMPLE, width * _SUPERSAMPLE), np.uint8)
    fixed_point = np.round((outline * _SUPERSAMPLE - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(mask, [fixed_point], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def _acceptable_visible(visible: np.ndarray, full_area: float, min_visible: float) -> bool:
    """Enough of the object shows, in pieces that are not slivers, and without holes."""
    if np.count_nonzero(visible) < min_visible * full_area:
        return False
    contours, hierarchy = cv2.findContours(visible, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if (hierarchy[0][:, 3] >= 0).any():  # a hole: polygons cannot describe it
        return False
    min_area = _MIN_FRAGMENT_AREA * _SUPERSAMPLE ** 2
    return all(cv2.contourArea(contour) >= min_area for contour in contours)


def _place_shapes(rng: np.random.Generator, height: int, width: int,
                  size_range: Tuple[float, float], objects_per_image: Tuple[int, int],
                  min_visible: float) -> List[_Shape]:
    """Place objects one over the other; a placement that would hide too much is retried."""
    shapes: List[_Shape] = []
    side = min(height, width)
    log_low, log_high = math.log(size_range[0]), math.log(size_range[1])
    for _ in range(rng.integers(objects_per_image[0], objects_per_image[1] + 1)):
        label = int(rng.integers(len(COCO_SHAPES_CLASSES)))
        for _ in range(_PLACEMENT_TRIES):
            radius = 0.5 * side * math.exp(rng.uniform(log_low, log_high))
            angle = rng.uniform(0, 2 * np.pi)
            margin = 0.4 * radius
            centre = rng.uniform((margin, margin), (width - margin, height - margin))
            rotation = np.array([[math.cos(angle), -math.sin(angle)],
                                 [math.sin(angle), math.cos(angle)]])
            outline = _OUTLINES[label] @ rotation.T * radius + centre
            candidate = _Shape(label, outline, _draw_mask(outline, height, width))
            if np.count_nonzero(candidate.mask) < min_visible * candidate.full_area:
                continue
            hidden = 1 - candidate.mask
            clipped = [cv2.bitwise_and(shape.visible, hidden) for shape in shapes]
            if all(np.array_equal(after, shape.visible)
                   or _acceptable_visible(after, shape.full_area, min_visible)
                   for after, shape in zip(clipped, shapes)):
                for shape, after in zip(shapes, clipped):
                    shape.visible = after
                shapes.append(candidate)
                break
    return shapes


def _polygons(visible: np.ndarray, height: int, width: int) -> List[np.ndarray]:
    """Polygons (pixel-edge coordinates, 2 decimals) tracing each visible piece."""
    contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour, _POLYGON_TOLERANCE * _SUPERSAMPLE, True)
        points = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / _SUPERSAMPLE
        points = np.round(np.clip(points, 0, (width, height)), 2)
        if len(points) >= 3 and cv2.contourArea(points.astype(np.float32)) > 0:
            polygons.append(points)
    return polygons


def _render(rng: np.random.Generator, height: int, width: int,
            size_range: Tuple[float, float], objects_per_image: Tuple[int, int],
            min_visible: float) -> Tuple[np.ndarray, List[dict]]:
    """One image (uint8, H x W x 3) and its annotations (without ids)."""
    image = _background(rng, height, width)
    shapes = _place_shapes(rng, height, width, size_range, objects_per_image, min_visible)
    annotations = []
    for shape in shapes:
        alpha = cv2.resize(shape.mask.astype(np.float32), (width, height),
                           interpolation=cv2.INTER_AREA)[..., None]
        below = (image * alpha).sum(axis=(0, 1)) / alpha.sum()
        colour = _pick_colour(rng, [below])
        image = image * (1 - alpha) + _object_layer(rng, colour, height, width) * alpha
        polygons = _polygons(shape.visible, height, width)
        points = np.concatenate(polygons)
        left, top = points.min(axis=0)
        right, bottom = points.max(axis=0)
        annotations.append(dict(
            category_id=shape.label + 1,
            bbox=[float(left), float(top), round(float(right - left), 2),
                  round(float(bottom - top), 2)],
            area=round(sum(float(cv2.contourArea(p.astype(np.float32))) for p in polygons), 2),
            iscrowd=0,
            segmentation=[[float(v) for v in p.reshape(-1)] for p in polygons]))
    image += rng.normal(0, 2.0, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), annotations


def _write_split(root: Path, split_index: int, num_images: int, params: dict,
                 progress: Optional[Callable[[str, int, int], None]]) -> int:
    split = _SPLITS[split_index]
    height, width = params['image_size']
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([params['seed'], split_index, index])
        image, objects = _render(rng, height, width, tuple(params['size_range']),
                                 tuple(params['objects_per_image']), params['min_visible'])
        file_name = f'{index:06d}.jpg'
        encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])[1]
        (root / split / file_name).write_bytes(encoded.tobytes())
        images.append(dict(id=index + 1, file_name=file_name, height=height, width=width))
        for annotation in objects:
            annotations.append(dict(id=len(annotations) + 1, image_id=index + 1, **annotation))
        if progress is not None:
            progress(split, index + 1, num_images)
    coco = dict(
        info=dict(description='coco_shapes: generated demo data of mutualnet_mm',
                  version=str(_FORMAT_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(COCO_SHAPES_CLASSES)])
    (root / 'annotations').mkdir(exist_ok=True)
    with open(root / 'annotations' / f'instances_{split}.json', 'w') as file:
        json.dump(coco, file, separators=(',', ':'))
    return len(annotations)


def generate_coco_shapes(root: Union[str, Path],
                         num_train: int = 400,
                         num_val: int = 100,
                         image_size: Union[int, Tuple[int, int]] = (160, 160),
                         seed: int = 0,
                         size_range: Tuple[float, float] = (0.05, 0.6),
                         objects_per_image: Tuple[int, int] = (1, 6),
                         min_visible: float = 0.5,
                         progress: Optional[Callable[[str, int, int], None]] = None) -> Dict:
    """Write the shapes dataset under ``root`` unless it is already there.

    Args:
        root: Output folder. It must be absent, empty, or an earlier output of this
            function (recognised by its ``meta.json``, and then replaced).
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: ``(H, W)`` or one int for square images.
        seed: Seed; the same seed and parameters give identical files.
        size_range: Smallest and largest object diameter, as a fraction of the shorter
            image side; sizes are log-uniform in between.
        objects_per_image: Fewest and most objects to place (a placement that cannot
            keep every object visible enough is dropped, so an image may hold fewer).
        min_visible: Smallest visible fraction of an object (occlusion and image border).
        progress: Called as ``progress(split, done, total)`` after each image.

    Returns:
        Summary: ``root``, image and object counts per split, ``image_size``,
        ``classes``, and ``generated`` (False when the data was already there).
    """
    image_size = _image_size_pair(image_size)
    size_range = tuple(float(v) for v in size_range)
    objects_per_image = tuple(objects_per_image)
    _check_arguments(num_train, num_val, image_size, seed, size_range, objects_per_image,
                     min_visible)
    root = Path(root)
    params = dict(format_version=_FORMAT_VERSION, num_train=num_train, num_val=num_val,
                  image_size=list(image_size), seed=seed, size_range=list(size_range),
                  objects_per_image=list(objects_per_image), min_visible=float(min_visible))
    meta_path = root / 'meta.json'
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get('params') == params and meta.get('summary') is not None:
            return dict(meta['summary'], generated=False)
        for name in (*_SPLITS, 'annotations'):
            shutil.rmtree(root / name, ignore_errors=True)
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f'root {str(root)!r} is not empty and holds no meta.json of this '
                         f'generator; give an empty or new folder')
    root.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(dict(params=params, summary=None)))  # marks it as ours
    num_objects = [_write_split(root, i, num, params, progress)
                   for i, num in enumerate((num_train, num_val))]
    summary = dict(root=str(root), num_train=num_train, num_val=num_val,
                   train_objects=num_objects[0], val_objects=num_objects[1],
                   image_size=list(image_size), classes=list(COCO_SHAPES_CLASSES))
    meta_path.write_text(json.dumps(dict(params=params, summary=summary), indent=1))
    return dict(summary, generated=True)
