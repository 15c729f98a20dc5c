"""Real aerial photographs with annotated tree crowns, tiled into COCO detection data.

The source is the set of NEON airborne RGB photographs (10 cm pixels) with tree-crown
boxes (Pascal VOC XML) that the ``deepforest`` package ships in ``deepforest/data/``.
The package is located and its files are read; it is never imported (its own
dependencies are not installed).

Tiling: every photograph is cut into ``tile_size`` tiles. Training tiles overlap by
``overlap`` pixels (a crown cut by one tile's border is whole in its neighbour);
validation tiles are spaced as evenly as covering the photograph allows, overlapping as
little as possible. A crown box is clipped to each tile it touches and kept when at least
``min_visible`` of its area is inside; a smaller piece of at least ``MIN_FRAGMENT_SIDE``
pixels a side becomes an ``iscrowd`` region (COCO's evaluator ignores detections there;
mmdet loads it as an ignored instance), a thinner one is left out. Tiles without a kept
crown are written (negatives) or dropped, as ``empty_tiles`` says; both are counted.

Split by photograph, so that no tree is in both sets: :data:`SOURCES` assigns each one.
Every box is labelled ``Tree`` (``SOAP_061`` marks its crowns ``Dead`` or ``Alive``, 28
and 9 boxes in one photograph: a class of 9 boxes that only the training split holds).

Layout written under ``root`` (the whole folder is replaced at once)::

    train/<photo>_x<left>_y<top>.jpg ...   val/...
    annotations/instances_train.json   annotations/instances_val.json
    meta.json              (the parameters; same parameters -> nothing to do)
"""
import importlib.metadata
import importlib.util
import json
import math
import os.path as osp
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from ..checks import check_int
from ..reliability.fileio import atomic_write, replaced_directory, write_text_atomically

DEEPFOREST_VERSION = '2.1.0'
INSTALL_COMMAND = f'pip install --no-deps deepforest=={DEEPFOREST_VERSION}'
TREE_CLASSES = ('Tree',)
#: Labels of the source annotations, all mapped to ``Tree``.
SOURCE_LABELS = ('Tree', 'Dead', 'Alive')
#: Each photograph's split: the validation set is one whole photograph.
SOURCES = (
    ('2019_YELL_2_528000_4978000_image_crop2', 'train'),
    ('OSBS_029', 'train'),
    ('SOAP_061', 'train'),
    ('2019_YELL_2_541000_4977000_image_crop', 'val'),
)
SPLITS = ('train', 'val')
#: A clipped piece thinner than this (pixels) is left out rather than marked ignored.
MIN_FRAGMENT_SIDE = 2.0
EMPTY_TILE_POLICIES = ('keep', 'drop')

_FORMAT_VERSION = 1
_JPEG_QUALITY = 95
_OWN_NAMES = ('train', 'val', 'annotations', 'meta.json')
_PHOTO_MODES = ('RGB', 'RGBA', 'L')  # an alpha channel is dropped: the photographs are opaque


def find_deepforest_data() -> Path:
    """The ``data`` folder of the installed ``deepforest`` package, found without importing it.

    Raises:
        ModuleNotFoundError: The package is not installed; the message gives the command.
        FileNotFoundError: It is installed but has no ``data`` folder.
    """
    spec = importlib.util.find_spec('deepforest')
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f'the deepforest package (its tree-crown photographs) is not installed in '
            f'this environment; install it with `{INSTALL_COMMAND}` (or run '
            f'tools/setup_env.sh)', name='deepforest')
    data = Path(next(iter(spec.submodule_search_locations))) / 'data'
    if not data.is_dir():
        raise FileNotFoundError(f'the installed deepforest package has no data folder '
                                f'{str(data)!r}; reinstall it with `{INSTALL_COMMAND}`')
    return data


def deepforest_version() -> Optional[str]:
    """The installed ``deepforest`` version, or None."""
    try:
        return importlib.metadata.version('deepforest')
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class AnnotatedPhoto:
    """One source photograph and its crown boxes.

    Attributes:
        name: The annotation file's stem.
        image_path: The photograph.
        width: Width in pixels.
        height: Height in pixels.
        boxes: ``(N, 4)`` float64, ``x1, y1, x2, y2`` in pixel-edge coordinates.
        labels: The source label of each box.
    """

    name: str
    image_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: List[str]


def _text(element: ElementTree.Element, path: str, source: Path) -> str:
    found = element.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise ValueError(f'{str(source)!r}: <{path}> is missing or empty')
    return found.text.strip()


def _number(element: ElementTree.Element, path: str, source: Path) -> float:
    text = _text(element, path, source)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'{str(source)!r}: <{path}> is {text!r}, not a number') from None
    if not math.isfinite(value):
        raise ValueError(f'{str(source)!r}: <{path}> is {text!r}, not a finite number')
    return value


def read_voc_photo(xml_path: Union[str, Path]) -> AnnotatedPhoto:
    """Read a Pascal VOC annotation file and check its boxes against the image size.

    Args:
        xml_path: The annotation file; the photograph (``<filename>``) is beside it.

    Raises:
        ValueError: A field is missing or not a number, a label is not one of
            :data:`SOURCE_LABELS`, or a box is degenerate or reaches outside the image
            (the message names the file, the object's index and the values).
    """
    xml_path = Path(xml_path)
    root = ElementTree.parse(xml_path).getroot()
    image_path = xml_path.parent / _text(root, 'filename', xml_path)
    width = int(_number(root, 'size/width', xml_path))
    height = int(_number(root, 'size/height', xml_path))
    if width < 1 or height < 1:
        raise ValueError(f'{str(xml_path)!r}: image size {width}x{height} is empty')
    boxes, labels = [], []
    for index, obj in enumerate(root.findall('object')):
        label = _text(obj, 'name', xml_path)
        if label not in SOURCE_LABELS:
            raise ValueError(f'{str(xml_path)!r}: object {index} has label {label!r}; '
                             f'expected one of {list(SOURCE_LABELS)}')
        box = [_number(obj, f'bndbox/{key}', xml_path)
               for key in ('xmin', 'ymin', 'xmax', 'ymax')]
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f'{str(xml_path)!r}: object {index} has a degenerate box '
                             f'(xmin, ymin, xmax, ymax) = {tuple(box)}; expected xmax > xmin '
                             f'and ymax > ymin')
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ValueError(f'{str(xml_path)!r}: object {index} has box (xmin, ymin, xmax, '
                             f'ymax) = {tuple(box)}, outside the {width}x{height} image')
        boxes.append(box)
        labels.append(label)
    return AnnotatedPhoto(xml_path.stem, image_path, width, height,
                          np.array(boxes, np.float64).reshape(-1, 4), labels)


def load_photo_pixels(photo: AnnotatedPhoto) -> np.ndarray:
    """The photograph as 8-bit BGR, checked against the size its annotation file states.

    Raises:
        FileNotFoundError: The photograph is missing.
        ValueError: It cannot be decoded, is not 8-bit RGB, RGBA or grey, or its size
            differs.
    """
    if not photo.image_path.is_file():
        raise FileNotFoundError(f'photograph {str(photo.image_path)!r} of {photo.name!r} '
                                f'does not exist; reinstall deepforest: `{INSTALL_COMMAND}`')
    try:
        with Image.open(photo.image_path) as image:
            mode = image.mode
            if mode not in _PHOTO_MODES:
                raise ValueError(f'photograph {str(photo.image_path)!r} has pixel mode '
                                 f'{mode!r}; expected one of {list(_PHOTO_MODES)} (8 bits '
                                 f'per channel)')
            pixels = np.asarray(image.convert('RGB'))
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f'photograph {str(photo.image_path)!r} cannot be decoded '
                         f'({error})') from None
    if pixels.shape[:2] != (photo.height, photo.width):
        raise ValueError(f'photograph {str(photo.image_path)!r} is '
                         f'{pixels.shape[1]}x{pixels.shape[0]}, its annotation file says '
                         f'{photo.width}x{photo.height}')
    return np.ascontiguousarray(pixels[..., ::-1])


def tile_origins(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``, overlapping by at
    least ``overlap``, evenly spaced; the first starts at 0 and the last ends at ``length``.

    A side no longer than ``tile`` is one tile of that side (see :func:`tile_boxes`).
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def tile_boxes(width: int, height: int, tile: int, overlap: int) -> List[Tuple[int, ...]]:
    """The tiles ``(x1, y1, x2, y2)`` of a ``width`` x ``height`` image, row by row."""
    return [(left, top, min(left + tile, width), min(top + tile, height))
            for top in tile_origins(height, tile, overlap)
            for left in tile_origins(width, tile, overlap)]


def clip_to_tile(boxes: np.ndarray, tile: Sequence[int],
                 min_visible: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes clipped to a tile, in the tile's coordinates.

    Returns:
        ``(clipped, kept, fragment)``: the ``(N, 4)`` clipped boxes and two masks: the
        boxes with at least ``min_visible`` of their area inside, and the smaller pieces
        with both sides at least :data:`MIN_FRAGMENT_SIDE` (to be ignored regions).
    """
    left, top, right, bottom = tile
    origin = np.array([left, top, left, top], np.float64)
    clipped = np.clip(boxes, origin, [right, bottom, right, bottom]) - origin
    sides = clipped[:, 2:] - clipped[:, :2]
    inside = sides.prod(axis=1) * (sides > 0).all(axis=1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1)
    kept = inside >= min_visible * area
    fragment = ~kept & (sides >= MIN_FRAGMENT_SIDE).all(axis=1)
    return clipped, kept, fragment


def _coco_box(box: np.ndarray) -> List[float]:
    x1, y1, x2, y2 = (round(float(v), 2) for v in box)
    return [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)]


def _write_jpeg(path: Path, pixels: np.ndarray) -> None:
    def write(target: str) -> None:
        if not cv2.imwrite(target, pixels, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
            raise OSError(f'could not write {target!r}')

    atomic_write(str(path), write)


def _tile_split(photos: Sequence[Tuple[AnnotatedPhoto, np.ndarray]], folder: Path,
                params: dict, overlap: int) -> Tuple[dict, dict]:
    """Write the tiles of ``photos`` into ``folder``; the COCO content and the counts."""
    folder.mkdir(parents=True)
    images, annotations = [], []
    counts = dict(photos=len(photos), source_boxes=0, tiles=0, empty_tiles=0,
                  dropped_empty_tiles=0, boxes=0, clipped_boxes=0, ignored_fragments=0,
                  left_out_slivers=0)
    for photo, pixels in photos:
        counts['source_boxes'] += len(photo.boxes)
        for tile in tile_boxes(photo.width, photo.height, params['tile_size'], overlap):
            clipped, kept, fragment = clip_to_tile(photo.boxes, tile, params['min_visible'])
            touching = ((clipped[:, 2:] - clipped[:, :2]) > 0).all(axis=1)
            if not kept.any():
                counts['empty_tiles'] += 1
                if params['empty_tiles'] == 'drop':
                    counts['dropped_empty_tiles'] += 1
                    continue
            left, top, right, bottom = tile
            file_name = f'{photo.name}_x{left:04d}_y{top:04d}.jpg'
            _write_jpeg(folder / file_name, pixels[top:bottom, left:right])
            image_id = len(images) + 1
            images.append(dict(id=image_id, file_name=file_name, width=right - left,
                               height=bottom - top, source=photo.name,
                               source_region=[left, top, right, bottom]))
            whole = (clipped == photo.boxes - np.array([left, top, left, top])).all(axis=1)
            for index in np.flatnonzero(kept | fragment):
                box = _coco_box(clipped[index])
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=1, bbox=box,
                    area=round(box[2] * box[3], 2), iscrowd=int(not kept[index]),
                    source_index=int(index)))
            counts['tiles'] += 1
            counts['boxes'] += int(kept.sum())
            counts['clipped_boxes'] += int((kept & ~whole).sum())
            counts['ignored_fragments'] += int(fragment.sum())
            counts['left_out_slivers'] += int((touching & ~kept & ~fragment).sum())
    coco = dict(
        info=dict(description='NEON tree crowns (deepforest data), tiled by mutualnet_mm',
                  version=str(_FORMAT_VERSION)),
        licenses=[dict(id=1, name='CC0 1.0 (NEON imagery); MIT (deepforest annotations)')],
        images=images, annotations=annotations,
        categories=[dict(id=1, name=TREE_CLASSES[0], supercategory='plant')])
    return coco, counts


def _check_arguments(tile_size: int, overlap: int, min_visible: float,
                     empty_tiles: str) -> None:
    check_int(tile_size, 'tile_size', 32)
    check_int(overlap, 'overlap', 0)
    if overlap >= tile_size:
        raise ValueError(f'overlap must be smaller than tile_size ({tile_size}), got '
                         f'{overlap!r}')
    if not (isinstance(min_visible, (int, float)) and 0 < min_visible <= 1):
        raise ValueError(f'min_visible must be in (0, 1], got {min_visible!r}')
    if empty_tiles not in EMPTY_TILE_POLICIES:
        raise ValueError(f'empty_tiles must be one of {list(EMPTY_TILE_POLICIES)}, got '
                         f'{empty_tiles!r}')


def write_trees_coco(root: Union[str, Path], tile_size: int = 400, overlap: int = 100,
                     min_visible: float = 0.5, empty_tiles: str = 'keep',
                     data_dir: Optional[Union[str, Path]] = None) -> Dict:
    """Tile the photographs of :data:`SOURCES` into a COCO dataset under ``root``.

    Args:
        root: Output folder: absent, or an earlier output (replaced as a whole).
        tile_size: Side of the square tiles in pixels.
        overlap: Least overlap of neighbouring training tiles, in pixels (validation
            tiles overlap as little as covering the photograph allows).
        min_visible: Smallest fraction of a box's area inside a tile for it to be kept.
        empty_tiles: ``'keep'`` tiles without a kept box (negatives) or ``'drop'`` them.
        data_dir: The folder holding the photographs and their XML files (default: the
            installed deepforest package's, :func:`find_deepforest_data`).

    Returns:
        Summary: ``root``, ``params`` and per split the counts (``photos``,
        ``source_boxes``, ``tiles``, ``empty_tiles``, ``dropped_empty_tiles``, ``boxes``,
        ``clipped_boxes``, ``ignored_fragments``, ``left_out_slivers``), and
        ``generated`` (False when the data was already there).
    """
    _check_arguments(tile_size, overlap, min_visible, empty_tiles)
    data = Path(data_dir) if data_dir is not None else find_deepforest_data()
    missing = [name + '.xml' for name, _ in SOURCES if not (data / f'{name}.xml').is_file()]
    if missing:
        raise FileNotFoundError(f'{str(data)!r} lacks {missing}; expected the annotation '
                                f'files of deepforest {DEEPFOREST_VERSION} '
                                f'(`{INSTALL_COMMAND}`)')
    root = Path(root)
    params = dict(format_version=_FORMAT_VERSION, tile_size=tile_size, overlap=overlap,
                  min_visible=float(min_visible), empty_tiles=empty_tiles,
                  sources=[list(source) for source in SOURCES])
    meta_path = root / 'meta.json'
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get('params') == params:
            return dict(meta['summary'], generated=False)
    photos = {split: [] for split in SPLITS}
    for name, split in SOURCES:
        photo = read_voc_photo(data / f'{name}.xml')
        photos[split].append((photo, load_photo_pixels(photo)))
    summary = dict(root=str(root), params=params, source=str(data),
                   deepforest_version=deepforest_version())
    with replaced_directory(str(root), _OWN_NAMES) as staging:
        staging = Path(staging)
        (staging / 'annotations').mkdir()
        for split in SPLITS:
            coco, summary[split] = _tile_split(photos[split], staging / split, params,
                                               overlap if split == 'train' else 0)
            write_text_atomically(osp.join(staging, 'annotations', f'instances_{split}.json'),
                                  json.dumps(coco, separators=(',', ':')))
        write_text_atomically(str(staging / 'meta.json'),
                              json.dumps(dict(params=params, summary=summary), indent=1))
    return dict(summary, generated=True)


__all__ = ['DEEPFOREST_VERSION', 'EMPTY_TILE_POLICIES', 'INSTALL_COMMAND', 'MIN_FRAGMENT_SIDE',
           'SOURCES', 'SOURCE_LABELS', 'SPLITS', 'TREE_CLASSES', 'AnnotatedPhoto',
           'clip_to_tile', 'deepforest_version', 'find_deepforest_data',
           'load_photo_pixels', 'read_voc_photo', 'tile_boxes', 'tile_origins',
           'write_trees_coco']
