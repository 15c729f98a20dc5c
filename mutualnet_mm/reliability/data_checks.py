"""Checks of a config's data before a run: directories, annotation files, images.

mmdet and mmaction2 report missing or corrupt data deep in dataset building or only when
a dataloader worker first loads a sample, possibly hours into training; mmdet also drops
or leaves out annotations without a word. ``tools/train.py`` and ``tools/test.py`` run
:func:`check_data_config` before building the runner: errors name the config entry, the
path and what is expected; silent losses warn. Remote paths (``s3://...``) are not checked.
"""
import contextlib
import copy
import io
import json
import math
import os.path as osp
import sys
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import mmcv
from mmengine.registry import DATASETS, DefaultScope
from mmengine.utils import track_iter_progress
from PIL import Image

COCO_KEYS = ('images', 'annotations', 'categories')
CHECK_MODES = ('fast', 'all', 'none')
FAST_NUM_FILES = 100  # images (or clips) per dataset the fast check reads
#: The most pixels an image may have (read off its header before decoding): 10000 x 10000.
MAX_IMAGE_PIXELS = 100_000_000
_EXAMPLES = 3


#: A training class with fewer boxes than this is reported (:class:`DataWarning`).
FEW_BOXES = 10


class DroppedAnnotationsWarning(UserWarning):
    """Annotations that mmdet's ``CocoDataset`` drops when it loads the file."""


class DataWarning(UserWarning):
    """Data that mmdet takes without a word but that likely trains or evaluates otherwise
    than meant: classes with (almost) no boxes, training images left out for having no
    box, images with more objects than the model may detect."""


def _is_remote(path: str) -> bool:
    return '://' in path


def _join(root: str, path: str) -> str:
    """``path`` under ``root`` as mmengine's datasets join them."""
    if not root or osp.isabs(path) or _is_remote(path):
        return path
    return osp.join(root, path)


def _leaf_datasets(dataset: dict, where: str) -> Iterator[Tuple[dict, str]]:
    """The dataset configs below dataset wrappers (Repeat, Concat, ...), with their path."""
    if isinstance(dataset.get('dataset'), dict):
        yield from _leaf_datasets(dataset['dataset'], f'{where}.dataset')
    elif isinstance(dataset.get('datasets'), (list, tuple)):
        for index, child in enumerate(dataset['datasets']):
            yield from _leaf_datasets(child, f'{where}.datasets[{index}]')
    else:
        yield dataset, where


def _mask_loader(dataset: dict) -> Optional[dict]:
    """The ``LoadAnnotations`` of the dataset's pipeline if it loads masks, else None."""
    for transform in dataset.get('pipeline') or []:
        if isinstance(transform, dict) and \
                str(transform.get('type', '')).rpartition('.')[2] == 'LoadAnnotations' and \
                transform.get('with_mask'):
            return transform
    return None


def _first(items: Sequence, show: Callable[[Any], str] = repr) -> str:
    """The first :data:`_EXAMPLES` of ``items`` shown, ``...`` after them if there are more."""
    return ', '.join(map(show, items[:_EXAMPLES])) + (', ...' if len(items) > _EXAMPLES else '')


def _examples(annotations: List[dict], field: str = 'bbox') -> str:
    return _first(annotations, lambda a: f'id {a.get("id")!r} ({field} {a.get(field)!r}, '
                                         f'category_id {a.get("category_id")!r})')


def _lacks_a_polygon(annotation: dict) -> bool:
    """Whether mmdet's ``LoadAnnotations`` finds no usable polygon in the annotation's mask.

    It keeps the polygons of 6 or more coordinates (3 points), an even number, and ignores
    an instance left with none, box included.
    """
    segmentation = annotation.get('segmentation')
    return bool(segmentation) and isinstance(segmentation, list) and \
        all(isinstance(polygon, list) for polygon in segmentation) and \
        not any(len(polygon) >= 6 and len(polygon) % 2 == 0 for polygon in segmentation)


#: Why mmdet drops an annotation, by the field the examples show.
_DROP_REASONS = {
    'image_id': 'for an image_id that is not in images',
    'bbox': 'for their box (width or height under 1 pixel, area <= 0, or outside the image)',
    'segmentation': 'for their polygons (none has 3 points, i.e. 6 coordinates, or more: the '
                    'pipeline loads masks and ignores such an instance, box included)',
}


def _check_annotations(content: dict, path: str, where: str,
                       mask_loader: Optional[dict]) -> None:
    """Raise for annotations mmdet would drop by mistake; warn for those it drops by design.

    Undeclared category ids, RLE masks under ``poly2mask=False`` and boxes that are not
    finite are errors: the file or the pipeline is wrong, and whole classes or datasets
    vanish (or an infinite box is trained). Boxes under a pixel or outside the image,
    annotations of images the file does not list, and (when the pipeline loads masks)
    polygons under 3 points are a warning: mmdet drops them on purpose and real datasets
    hold a few.
    """
    images = {image.get('id'): image for image in content['images']}
    category_ids = {category.get('id') for category in content['categories']}
    annotations = [a for a in content['annotations'] if not a.get('ignore', False)]
    undeclared = [a for a in annotations if a.get('category_id') not in category_ids]
    if undeclared:
        raise ValueError(
            f'{where}.ann_file {path!r}: {len(undeclared)} of {len(annotations)} annotations '
            f'have a category_id that is not in its categories (ids '
            f'{sorted(category_ids, key=str)}), e.g. {_examples(undeclared)}; mmdet would '
            f'drop them without a word. Declare the categories or fix the category_id values')
    if mask_loader is not None and mask_loader.get('poly2mask', True) is False:
        rle = [a for a in annotations if isinstance(a.get('segmentation'), dict)
               and not a.get('iscrowd', False)]
        if rle:
            raise ValueError(
                f'{where}.ann_file {path!r}: {len(rle)} of {len(annotations)} annotations '
                f'have RLE masks (segmentation with counts), e.g. {_examples(rle)}, and '
                f"{where}.pipeline's LoadAnnotations(poly2mask=False) ignores every such "
                f'instance, box included. Set poly2mask=True there or convert the masks to '
                f'polygons')
    non_finite = []
    dropped: Dict[str, List[dict]] = {field: [] for field in _DROP_REASONS}
    for annotation in annotations:  # the conditions of mmdet's CocoDataset.parse_data_info
        bbox = annotation.get('bbox')
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise ValueError(f'{where}.ann_file {path!r}: annotation id '
                             f'{annotation.get("id")!r} has bbox {bbox!r}; expected '
                             f'[x, y, width, height], four numbers')
        x, y, w, h = bbox
        image = images.get(annotation.get('image_id'))
        if not all(math.isfinite(v) for v in bbox):
            non_finite.append(annotation)
        elif image is None:  # mmdet reads the annotations of the listed images only
            dropped['image_id'].append(annotation)
        elif w < 1 or h < 1 or annotation.get('area', 1) <= 0 or \
                min(x + w, image.get('width', x + w)) - max(x, 0) <= 0 or \
                min(y + h, image.get('height', y + h)) - max(y, 0) <= 0:
            dropped['bbox'].append(annotation)
        elif mask_loader is not None and not annotation.get('iscrowd', False) and \
                _lacks_a_polygon(annotation):
            dropped['segmentation'].append(annotation)
    if non_finite:
        raise ValueError(
            f'{where}.ann_file {path!r}: {len(non_finite)} of {len(annotations)} annotations '
            f'have a bbox that is not finite (NaN or infinite), e.g. {_examples(non_finite)}; '
            'mmdet would drop some without a word and train on others (an infinite width or '
            'height). Fix or remove them: every bbox must be four finite numbers')
    count = sum(len(found) for found in dropped.values())
    if count:
        warnings.warn(
            f'{where}.ann_file {path!r}: mmdet drops {count} of {len(annotations)} annotations '
            f'({count / len(annotations):.1%}): ' + '; '.join(
                f'{len(found)} {_DROP_REASONS[field]}, e.g. {_examples(found, field)}'
                for field, found in dropped.items() if found),
            DroppedAnnotationsWarning, stacklevel=2)


def _class_names(dataset: dict) -> Optional[List[str]]:
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        return None
    return [classes] if isinstance(classes, str) else list(classes)


def _check_classes_and_images(content: dict, path: str, where: str, dataset: dict) -> None:
    """Raise when the config's classes name none of the file's categories; warn for the
    annotations of other categories, which mmdet leaves out, for classes with fewer than
    :data:`FEW_BOXES` boxes, and for the images that ``filter_empty_gt`` leaves out.

    Without ``metainfo.classes`` in the config, every category of the file counts.
    """
    names = {category.get('id'): category.get('name') for category in content['categories']}
    classes = _class_names(dataset)
    selected = set(names) if classes is None else \
        {cat_id for cat_id, name in names.items() if name in classes}
    classes = list(dict.fromkeys(names.values())) if classes is None else classes
    file_names = sorted(map(str, names.values()))
    if not selected:
        raise ValueError(f'{where}.metainfo.classes {classes} names none of the categories of '
                         f'{where}.ann_file {path!r} ({file_names}): mmdet would train on no '
                         'box. Name the classes as the file names its categories')
    annotations = [a for a in content['annotations'] if not a.get('ignore', False)]
    left_out = Counter(names.get(a.get('category_id')) for a in annotations
                       if a.get('category_id') not in selected)
    if left_out:
        warnings.warn(
            f'{where}.ann_file {path!r}: mmdet leaves out {sum(left_out.values())} of '
            f'{len(annotations)} annotations, of categories that {where}.metainfo.classes '
            f'{classes} does not name: ' + ', '.join(f'{name!r} ({count})' for name, count
                                                     in left_out.most_common()),
            DataWarning, stacklevel=3)
    boxes = Counter(names[a['category_id']] for a in annotations
                    if a.get('category_id') in selected and not a.get('iscrowd', False))
    few = [name for name in classes if boxes[name] < FEW_BOXES]
    if few:
        warnings.warn(
            f'{where}.ann_file {path!r}: ' + ', '.join(f'class {name!r} has {boxes[name]}'
                                                      for name in few)
            + f' training boxes (fewer than {FEW_BOXES}; {sum(boxes.values())} in all): '
            'too few to learn the class; merge it into another or add data',
            DataWarning, stacklevel=3)
    filter_cfg = dataset.get('filter_cfg') or {}
    if filter_cfg.get('filter_empty_gt', False):
        with_boxes = {a.get('image_id') for a in annotations if a.get('category_id') in selected}
        empty = [image for image in content['images'] if image.get('id') not in with_boxes]
        if empty:
            warnings.warn(
                f'{where}.ann_file {path!r}: {len(empty)} of {len(content["images"])} images '
                f'have no annotation of the classes (e.g. '
                f'{_first([image.get("file_name") for image in empty])}) and '
                f'{where}.filter_cfg.filter_empty_gt=True leaves them out of training; '
                'set it to False to train on them as negatives',
                DataWarning, stacklevel=3)


def _metrics(cfg, split: str) -> list:
    """The metric configs of the split's evaluator (one, or a list)."""
    evaluator = cfg.get(f'{split}_evaluator')
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


def _detection_limits(cfg, split: str) -> List[Tuple[str, int]]:
    """The caps on detections per image in the model's test settings and the split's COCO
    evaluator (the mAP counts its last ``proposal_nums``), with their config keys."""
    limits = []
    test_cfg = (cfg.get('model') or {}).get('test_cfg') or {}
    for key, section in (('model.test_cfg', test_cfg), ('model.test_cfg.rcnn',
                                                        test_cfg.get('rcnn') or {})):
        if isinstance(section.get('max_per_img'), int):
            limits.append((f'{key}.max_per_img', section['max_per_img']))
    for metric in _metrics(cfg, split):
        if isinstance(metric, dict) and str(metric.get('type', '')).endswith('CocoMetric'):
            proposal_nums = metric.get('proposal_nums', (100, 300, 1000))
            limits.append((f'{split}_evaluator.proposal_nums[-1]', int(proposal_nums[-1])))
    return limits


def _check_detection_limits(cfg, split: str) -> None:
    """Warn when an image of the split holds more boxes than the model may detect or the
    evaluator counts: its recall, and so its AP, is capped without a word."""
    limits = _detection_limits(cfg, split)
    dataset = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
    if not limits or not dataset:
        return
    for config, place in _leaf_datasets(dataset, f'{split}_dataloader.dataset'):
        path = _join(config.get('data_root') or '', config.get('ann_file') or '')
        if not path.endswith('.json') or _is_remote(path) or not osp.isfile(path):
            continue
        with open(path, encoding='utf-8') as file:
            content = json.load(file)
        if not isinstance(content, dict) or 'annotations' not in content:
            continue
        per_image = Counter(a.get('image_id') for a in content['annotations']
                            if not a.get('iscrowd', False) and not a.get('ignore', False))
        if not per_image:
            continue
        image_id, most = per_image.most_common(1)[0]
        below = [(key, limit) for key, limit in limits if limit < most]
        if below:
            warnings.warn(
                f'{place}.ann_file {path!r}: image id {image_id!r} has {most} boxes, more than '
                + ', '.join(f'{key} = {limit}' for key, limit in below)
                + ': its recall and AP are capped. Raise the limit for dense scenes',
                DataWarning, stacklevel=3)


def _too_large(data: bytes) -> Optional[str]:
    """Why an image is too large to decode, read off its header (PIL, lazily), or None."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError as error:
            return f'too large to decode ({error})'
        except Exception:  # a format PIL does not read: decoding decides
            return None
    if width * height <= MAX_IMAGE_PIXELS:
        return None
    return (f'too large to decode: {width} x {height} = {width * height} pixels, more than '
            f'MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}')


def _unreadable(path: str, image: bool) -> Optional[str]:
    """Why the file at ``path`` cannot be read (an image: decoded as the pipeline would,
    within :data:`MAX_IMAGE_PIXELS`), or None."""
    try:
        with open(path, 'rb') as file:
            data = file.read() if image else file.read(1)
    except OSError as error:  # a symbolic link loop, a directory, no permission
        return f'cannot be opened ({error.strerror})'
    if not data:
        return 'empty file'
    if not image:
        return None
    reason = _too_large(data)
    if reason is not None:
        return reason
    try:
        decoded = mmcv.imfrombytes(data)
    except Exception as error:  # cv2 raises its own error class
        return f'cannot be decoded ({str(error).strip().splitlines()[-1]})'
    return None if decoded is not None else 'cannot be decoded (truncated or corrupt)'


def _built(config: dict, scope: Optional[str]):
    """The dataset of a (leaf) dataset config with its data list loaded, no pipeline."""
    config = dict(copy.deepcopy(config), pipeline=[], lazy_init=False, serialize_data=False)
    with DefaultScope.overwrite_default_scope(scope), \
            contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        return DATASETS.build(config)


def _sample(info: dict) -> Optional[Tuple[str, str]]:
    """``(path, kind)`` of a data list entry: an image, a file (a clip), a frame folder."""
    for key, kind in (('img_path', 'image'), ('filename', 'file'), ('frame_dir', 'folder')):
        if isinstance(info.get(key), str):
            return info[key], kind
    return None


def _check_samples(config: dict, where: str, num_files: Optional[int],
                   scope: Optional[str]) -> None:
    """Read the samples the dataset of ``config`` lists: they exist and (images) decode."""
    dataset = _built(config, scope)
    ann_file = getattr(dataset, 'ann_file', '') or ''
    prefix = next(iter(getattr(dataset, 'data_prefix', {}).values()), '')
    source = ann_file or prefix
    if len(dataset) == 0:
        raise ValueError(f'{where}: the dataset read from {source!r} has no samples; '
                         f'expected at least one')
    count = len(dataset) if num_files is None else min(num_files, len(dataset))
    first = _sample(dataset.get_data_info(0))
    noun = f'{first[1]}s' if first is not None else 'samples'
    infos = (dataset.get_data_info(index) for index in range(count))
    if num_files is None:
        print(f'{where}: reading the {count} {noun} of {source!r}')
        infos = track_iter_progress((infos, count), file=sys.stdout)
    missing, unreadable = [], []
    for info in infos:
        sample = _sample(info)
        if sample is None or _is_remote(sample[0]):
            continue
        path, kind = sample
        label = f'{path!r}' + (f' (id {info["img_id"]!r})' if 'img_id' in info else '')
        if not osp.lexists(path):
            missing.append((path, kind, info.get('img_id')))
        elif kind != 'folder':
            reason = _unreadable(path, image=kind == 'image')
            if reason is not None:
                unreadable.append(f'{label}: {reason}')
    if missing:
        (first, kind, image_id), more = missing[0], missing[1:]
        listed = ' '.join(([f'id {image_id!r}'] if image_id is not None else [])
                          + ([f'in {ann_file!r}'] if ann_file else []))
        raise FileNotFoundError(
            f'{where}: {kind} {first!r}' + (f' ({listed})' if listed else '')
            + f' does not exist; every listed file must be under data_prefix {prefix!r}'
            + (f' ({len(missing)} of {count} checked {noun} are missing, e.g. also '
               f'{_first([p for p, _, _ in more])})' if more else ''))
    if unreadable:
        raise ValueError(
            f'{where}: {len(unreadable)} of {count} {noun} read from {source!r} are '
            f'unreadable: ' + '; '.join(unreadable)
            + '. Replace them, or remove them from the dataset (and its annotation file)')


def _check_coco(path: str, where: str, require_coco: bool, dataset: Optional[dict]) -> None:
    try:
        with open(path, encoding='utf-8') as file:
            content = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'{where}.ann_file {path!r} is not valid JSON ({error}); expected a '
                         f'COCO annotation file, a JSON object with keys {list(COCO_KEYS)}'
                         ) from None
    is_coco = isinstance(content, dict) and 'images' in content
    if not (require_coco or is_coco):
        return
    missing = [key for key in COCO_KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise ValueError(f'{where}.ann_file {path!r} is not a COCO annotation file: it lacks '
                         f'{missing}; expected a JSON object with keys {list(COCO_KEYS)}')
    if dataset is not None:
        _check_annotations(content, path, where, _mask_loader(dataset))
        _check_classes_and_images(content, path, where, dataset)


def check_dataset_config(dataset: dict, where: str, num_files: Optional[int] = FAST_NUM_FILES,
                         training: bool = False, scope: Optional[str] = None) -> None:
    """Check a dataset config's ``data_root``, ``ann_file`` and samples.

    The samples are those of the built dataset's data list (any type: COCO, image
    folders and lists, video clips): images (``img_path``) are decoded as the pipeline
    would, within :data:`MAX_IMAGE_PIXELS`; clips (``filename``) are opened; frame
    folders exist.

    Args:
        dataset: A dataset config (wrappers are followed).
        where: Its place in the config, for messages (e.g. ``train_dataloader.dataset``).
        num_files: How many of the listed samples to read; None: all of them, with a
            progress bar.
        training: Whether a run trains on it: then its COCO annotations, classes and
            images are checked too (errors, :class:`DroppedAnnotationsWarning`,
            :class:`DataWarning`).
        scope: The registry scope its type is built in (the config's ``default_scope``).

    Raises:
        FileNotFoundError: The data root, the annotation file or a listed sample is missing.
        ValueError: An annotation file that does not parse or is not COCO where one is
            expected, an empty dataset, unreadable samples (all are listed), or (training)
            annotations mmdet would drop by mistake or classes naming no category.
    """
    for config, place in _leaf_datasets(dataset, where):
        data_root = config.get('data_root') or ''
        if _is_remote(data_root):
            continue
        if data_root and not osp.isdir(data_root):
            raise FileNotFoundError(f'{place}.data_root {data_root!r} does not exist; it must '
                                    'be the directory holding the dataset')
        ann_file = config.get('ann_file')
        if ann_file:
            path = _join(data_root, ann_file)
            if _is_remote(path):
                continue
            if not osp.isfile(path):
                raise FileNotFoundError(f'{place}.ann_file {path!r} does not exist (ann_file '
                                        f'{ann_file!r} under data_root {data_root!r})')
            if path.endswith('.json'):
                _check_coco(path, place, require_coco='Coco' in str(config.get('type', '')),
                            dataset=config if training else None)
        _check_samples(config, place, num_files, scope)


def check_data_config(cfg, splits: Sequence[str], mode: str = 'fast',
                      training: bool = True) -> None:
    """Check the datasets and evaluator annotation files of ``splits`` in a config.

    Args:
        cfg: The full config.
        splits: Among ``'train'``, ``'val'``, ``'test'``; absent entries are skipped.
        mode: ``'fast'``: the first 100 samples of each dataset are read (images:
            decoded); ``'all'``: every one, with a progress bar; ``'none'``: no check.
        training: Whether the run trains on the train split (``tools/train.py``): then its
            annotations are checked too (see :func:`check_dataset_config`). The COCO
            annotations of the other splits are checked against the detection limits of
            the model's ``test_cfg`` and of the split's ``CocoMetric`` (a
            :class:`DataWarning` when an image holds more boxes).
    """
    if mode not in CHECK_MODES:
        raise ValueError(f'data check mode must be one of {list(CHECK_MODES)}, got {mode!r}')
    if mode == 'none':
        return
    num_files = None if mode == 'all' else FAST_NUM_FILES
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            check_dataset_config(loader['dataset'], f'{split}_dataloader.dataset', num_files,
                                 training and split == 'train', cfg.get('default_scope'))
            if split != 'train':
                _check_detection_limits(cfg, split)
        metrics = _metrics(cfg, split)
        for index, metric in enumerate(metrics):
            ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
            if ann_file and not _is_remote(ann_file) and not osp.isfile(ann_file):
                place = f'{split}_evaluator' + (f'[{index}]' if len(metrics) > 1 else '')
                raise FileNotFoundError(f'{place}.ann_file {ann_file!r} does not exist')


__all__ = ['CHECK_MODES', 'COCO_KEYS', 'FEW_BOXES', 'MAX_IMAGE_PIXELS', 'DataWarning',
           'DroppedAnnotationsWarning', 'check_data_config', 'check_dataset_config']
