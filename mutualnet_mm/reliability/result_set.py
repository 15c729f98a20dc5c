"""Result sets: files written together, put in place together, checked when read.

The files are written to temporary files, then a manifest (``result_set.json``) naming
every file and its sha256 is put in place, then the files are renamed into place. A
writer killed (or out of disk) midway leaves the previous set as it was; readers of a
file check it against the manifest (:func:`check_in_result_set`), so a set caught half
renamed is refused, never mixed. The next write removes the temporaries a killed one
left, and of the earlier set's files only those its manifest names.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Any, Callable, Dict, List

from .fileio import (
    atomic_write,
    create_temporary,
    fsync_file,
    remove_if_exists,
    remove_regular_file,
    remove_stale_temporaries,
    temporary_path,
)

MANIFEST_NAME = 'result_set.json'
MANIFEST_VERSION = 1


def write_json(data: Any) -> Callable[[str], None]:
    """A writer of ``data`` as indented JSON, for :func:`write_result_set`."""
    def write(path: str) -> None:
        with open(path, 'w') as f:
            json.dump(data, f, indent=2)
    return write


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str, what: str, expected: str) -> Any:
    """The JSON content of ``path``; a ValueError naming the file if it does not parse."""
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'{what} {path!r} does not parse as JSON ({error}); expected '
                         f'{expected}') from error
    except RecursionError:  # raised while unwinding: the traceback would be as deep
        raise ValueError(f'{what} {path!r} is nested too deeply to parse as JSON; expected '
                         f'{expected}') from None


def _previous_set(out_dir: str, is_member: Callable[[str], bool]) -> List[str]:
    """The result files the manifest in ``out_dir`` names (none if it does not parse)."""
    try:
        with open(osp.join(out_dir, MANIFEST_NAME)) as f:
            files = json.load(f).get('files')
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in files if isinstance(name, str) and is_member(name)] \
        if isinstance(files, dict) else []


def check_in_result_set(path: str, regenerate: str) -> None:
    """Refuse a result file that is not the one its directory's manifest names.

    A file in a directory without a manifest (a standalone table) is accepted;
    ``regenerate`` says how to write the set again.

    Raises:
        ValueError: the manifest does not name the file (it is left from an earlier
            evaluation), the file's sha256 differs (a set caught half renamed), or the
            manifest does not parse.
    """
    manifest_path = osp.join(osp.dirname(osp.abspath(path)), MANIFEST_NAME)
    if not osp.isfile(manifest_path):
        return
    expected = f'a JSON object with version {MANIFEST_VERSION} and "files" (name -> sha256)'
    manifest = read_json(manifest_path, 'result set manifest', expected)
    files = manifest.get('files') if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f'result set manifest {manifest_path!r} is not {expected}')
    name = osp.basename(path)
    if name not in files:
        raise ValueError(f'{path!r} is not part of the latest result set: {manifest_path!r} '
                         f'names {sorted(files)}; it is left from an earlier evaluation')
    if file_sha256(path) != files[name]:
        raise ValueError(f'{path!r} is not the file the result set {manifest_path!r} names '
                         '(its sha256 differs): an evaluation stopped while putting its '
                         f'files in place; rerun it: {regenerate}')


def write_result_set(out_dir: str, writers: Dict[str, Callable[[str], None]],
                     is_member: Callable[[str], bool], header: Dict[str, Any]) -> Dict[str, str]:
    """Write the files ``{name: write(path)}`` to ``out_dir`` as one result set.

    Args:
        out_dir: The directory of the set.
        writers: Each file's name and the function that writes it to a given path.
        is_member: Whether a file name may belong to a set of this kind: only such
            files (the earlier set's, stale temporaries) are ever removed.
        header: Entries of the manifest besides ``version`` and ``files``.

    Returns:
        The paths written, by file name (the manifest's included).
    """
    remove_stale_temporaries(out_dir, lambda name: is_member(name) or name == MANIFEST_NAME)
    previous = _previous_set(out_dir, is_member)
    staged: Dict[str, str] = {}
    try:
        for name, write in writers.items():
            temporary = temporary_path(osp.join(out_dir, name))
            create_temporary(temporary)
            staged[name] = temporary
            write(temporary)
            fsync_file(temporary)
        manifest = {'version': MANIFEST_VERSION, **header,
                    'files': {name: file_sha256(path) for name, path in staged.items()}}
        atomic_write(osp.join(out_dir, MANIFEST_NAME), write_json(manifest))
    except BaseException:
        for path in staged.values():
            remove_if_exists(path)
        raise
    paths = {name: osp.join(out_dir, name) for name in writers}
    for name, path in staged.items():  # a set caught half renamed fails its manifest
        os.replace(path, paths[name])
    for name in set(previous) - set(writers) - {MANIFEST_NAME}:
        remove_regular_file(osp.join(out_dir, name))  # of the earlier set only
    paths[MANIFEST_NAME] = osp.join(out_dir, MANIFEST_NAME)
    return paths
