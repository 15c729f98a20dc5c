"""Checks of a config's data before a run: directories, annotation files, images.

Without them, mmdet and mmaction2 report a missing data root or annotation file deep in
dataset building, a corrupt annotation JSON without naming the file, and a missing image
only when that sample is first loaded (possibly hours into training, inside a dataloader
worker). ``tools/train.py`` and ``tools/test.py`` run :func:`check_data_config` before
building the runner; errors name the config entry, the path and what is expected.
Remote paths (``s3://...``) are not checked.
"""
import json
import os.path as osp
from typing import Iterator, Sequence, Tuple

COCO_KEYS = ('images', 'annotations', 'categories')


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


def _check_coco(path: str, where: str, images_dir: str, num_files: int,
                require_coco: bool) -> None:
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
    if images_dir is None or _is_remote(images_dir):
        return
    for image in content['images'][:num_files]:
        image_path = osp.join(images_dir, str(image.get('file_name')))
        if not osp.isfile(image_path):
            raise FileNotFoundError(
                f'{where}: image {image_path!r} (id {image.get("id")!r} in {path!r}) does '
                f'not exist; every file_name must be a file under data_prefix.img '
                f'{images_dir!r}')


def _check_list(path: str, where: str, files_dir: str, num_files: int) -> None:
    with open(path, encoding='utf-8') as file:
        lines = [line.split() for line in file if line.strip()]
    if not lines:
        raise ValueError(f'{where}.ann_file {path!r} is empty; expected one sample per line')
    if files_dir is None or _is_remote(files_dir):
        return
    for fields in lines[:num_files]:
        sample = osp.join(files_dir, fields[0])
        if not osp.exists(sample):
            raise FileNotFoundError(f'{where}: {sample!r} (listed in {path!r}) does not exist; '
                                    f'every listed sample must be under {files_dir!r}')


def check_dataset_config(dataset: dict, where: str, num_files: int = 100) -> None:
    """Check a dataset config's ``data_root``, ``ann_file`` and first samples.

    Args:
        dataset: A dataset config (wrappers are followed).
        where: Its place in the config, for messages (e.g. ``train_dataloader.dataset``).
        num_files: How many of the listed images (or clips) must exist.

    Raises:
        FileNotFoundError: The data root, the annotation file or a listed sample is missing.
        ValueError: The annotation file is not valid JSON, not a COCO file where one is
            expected, or an empty list.
    """
    for config, place in _leaf_datasets(dataset, where):
        data_root = config.get('data_root') or ''
        if data_root and not _is_remote(data_root) and not osp.isdir(data_root):
            raise FileNotFoundError(f'{place}.data_root {data_root!r} does not exist; it must '
                                    'be the directory holding the dataset')
        ann_file = config.get('ann_file')
        if not ann_file:
            continue
        path = _join(data_root, ann_file)
        if _is_remote(path):
            continue
        if not osp.isfile(path):
            raise FileNotFoundError(f'{place}.ann_file {path!r} does not exist (ann_file '
                                    f'{ann_file!r} under data_root {data_root!r})')
        prefix = config.get('data_prefix') or {}
        if path.endswith('.json'):
            images = prefix.get('img')
            _check_coco(path, place, None if images is None else _join(data_root, images),
                        num_files, require_coco='Coco' in str(config.get('type', '')))
        elif path.endswith('.txt'):
            files = prefix.get('video', prefix.get('img'))
            _check_list(path, place, None if files is None else _join(data_root, files),
                        num_files)


def check_data_config(cfg, splits: Sequence[str], num_files: int = 100) -> None:
    """Check the datasets and evaluator annotation files of ``splits`` in a config.

    Args:
        cfg: The full config.
        splits: Among ``'train'``, ``'val'``, ``'test'``; absent entries are skipped.
        num_files: How many listed images (or clips) per dataset must exist.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            check_dataset_config(loader['dataset'], f'{split}_dataloader.dataset', num_files)
        evaluator = cfg.get(f'{split}_evaluator')
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for index, metric in enumerate(metrics):
            ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
            if ann_file and not _is_remote(ann_file) and not osp.isfile(ann_file):
                place = f'{split}_evaluator' + (f'[{index}]' if len(metrics) > 1 else '')
                raise FileNotFoundError(f'{place}.ann_file {ann_file!r} does not exist')


__all__ = ['COCO_KEYS', 'check_data_config', 'check_dataset_config']
