"""Files that are whole or absent: write a temporary file, flush it to disk, rename it.

A kill, a preemption or a full disk while writing leaves the previous file as it was.
"""
import os
import os.path as osp
from typing import Callable, Optional


def temporary_path(path: str) -> str:
    """A hidden temporary name next to ``path`` that keeps its extension (writers such as
    matplotlib infer the format from it)."""
    directory, name = osp.split(osp.abspath(path))
    return osp.join(directory, f'.{name}.{os.getpid()}.tmp{osp.splitext(name)[1]}')


def fsync_file(path: str) -> None:
    """Flush ``path``'s data to disk."""
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_exists(path: str) -> None:
    """Remove ``path`` (a file or a link) if it is there."""
    if osp.lexists(path):
        os.remove(path)


def atomic_write(path: str, write: Callable[[str], None],
                 temporary: Optional[str] = None) -> None:
    """Have ``write`` write a temporary file, flush it, then rename it to ``path``.

    Args:
        path: The file to (re)place.
        write: Writes the file whose path it is given.
        temporary: The temporary name (default: :func:`temporary_path`); it must be in
            ``path``'s directory.
    """
    temporary = temporary or temporary_path(path)
    try:
        write(temporary)
        fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        remove_if_exists(temporary)
        raise
    fsync_directory(osp.dirname(osp.abspath(path)))


def write_text_atomically(path: str, text: str, temporary: Optional[str] = None) -> None:
    """:func:`atomic_write` of ``text``."""
    def write(target: str) -> None:
        with open(target, 'w') as f:
            f.write(text)

    atomic_write(path, write, temporary)


__all__ = ['atomic_write', 'fsync_directory', 'fsync_file', 'remove_if_exists',
           'temporary_path', 'write_text_atomically']
