"""Files that are whole or absent: write a temporary file, flush it to disk, rename it.

A kill, a preemption or a full disk while writing leaves the previous file as it was.
Temporaries are named ``.<name>.<pid>.tmp<ext>`` (:func:`temporary_path`) and created
exclusively, never through a symbolic link; sweeps remove only regular files of exactly
that form. A directory (an export) is written whole the same way: staged next to it and
swapped in (:func:`replaced_directory`).
"""
import contextlib
import ctypes
import errno
import os
import os.path as osp
import re
import shutil
import stat
from typing import Callable, Collection, Iterator, List, Optional, Tuple

_TEMPORARY = re.compile(r'\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(?P<ext>\.[^.]*)?')
#: renameat2(2): AT_FDCWD and RENAME_EXCHANGE.
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def temporary_path(path: str) -> str:
    """A hidden temporary name next to ``path`` that keeps its extension (writers such as
    matplotlib infer the format from it)."""
    directory, name = osp.split(osp.abspath(path))
    return osp.join(directory, f'.{name}.{os.getpid()}.tmp{osp.splitext(name)[1]}')


def _parse_temporary(name: str) -> Optional[Tuple[str, int]]:
    """``(file name, writer's pid)`` of a :func:`temporary_path` name, else None."""
    match = _TEMPORARY.fullmatch(name)
    if match is None or (match['ext'] or '') != osp.splitext(match['name'])[1]:
        return None
    return match['name'], int(match['pid'])


def _running_elsewhere(pid: int) -> bool:
    """Whether ``pid`` is another process running on this machine."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


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


def remove_regular_file(path: str) -> bool:
    """Remove ``path`` if it is a regular file (never a link's target or a directory).

    Returns:
        Whether a file was removed.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        return False
    os.remove(path)
    return True


def remove_stale_temporaries(directory: str, is_ours: Callable[[str], bool]) -> List[str]:
    """Remove the temporaries left in ``directory`` by interrupted writes of our files.

    Only regular files named exactly as :func:`temporary_path` names the temporary of a
    file ``is_ours`` accepts are removed, and not those of another running process.

    Returns:
        The paths removed.
    """
    removed = []
    if not osp.isdir(directory):
        return removed
    for entry in os.scandir(directory):
        parsed = _parse_temporary(entry.name)
        if parsed is not None and is_ours(parsed[0]) and \
                not _running_elsewhere(parsed[1]) and remove_regular_file(entry.path):
            removed.append(entry.path)
    return removed


def create_temporary(temporary: str) -> None:
    """Create the empty file ``temporary`` (``O_EXCL``: no symbolic link is followed).

    A regular file already there has this process's id in its name: an earlier process
    with the same id left it, and it is replaced.

    Raises:
        FileExistsError: something other than a regular file has the name.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0)
    try:
        fd = os.open(temporary, flags, 0o666)
    except FileExistsError:
        if not remove_regular_file(temporary):
            raise FileExistsError(errno.EEXIST, f'{temporary!r} exists and is not a regular '
                                  'file; it was not written here: remove it') from None
        fd = os.open(temporary, flags, 0o666)
    os.close(fd)


def write_error(error: OSError, what: str, directory: str, remedy: str) -> str:
    """What could not be saved where, why (naming a full disk) and the free space there.

    Args:
        error: The error of the write.
        what: What was written (e.g. ``checkpoint iter_2.pth``).
        directory: Where.
        remedy: What to do once space is freed (e.g. ``resume with --resume``).
    """
    try:
        free = f'{shutil.disk_usage(directory).free / 2**20:.1f} MiB free'
    except OSError:  # the directory could not even be created
        free = 'free space unknown'
    hint = (f' (disk full: free space there and {remedy})'
            if error.errno in (errno.ENOSPC, errno.EDQUOT) else '')
    return f'could not save {what} in {directory}: {error.strerror}{hint}; {free}'


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Have ``write`` write a temporary file, flush it, then rename it to ``path``.

    Args:
        path: The file to (re)place.
        write: Writes the file whose path it is given (:func:`temporary_path`, created
            empty by :func:`create_temporary`).
    """
    temporary = temporary_path(path)
    create_temporary(temporary)
    try:
        write(temporary)
        fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        remove_if_exists(temporary)
        raise
    fsync_directory(osp.dirname(osp.abspath(path)))


def write_text_atomically(path: str, text: str) -> None:
    """:func:`atomic_write` of ``text``."""
    def write(target: str) -> None:
        with open(target, 'w') as f:
            f.write(text)

    atomic_write(path, write)


# ------------------------------------------------------------- whole directories
def exchange_paths(first: str, second: str) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2`` ``RENAME_EXCHANGE``).

    Returns:
        Whether they were swapped; False where the system or file system cannot.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), first, None, second)


def _aside(path: str, kind: str, pid: int) -> str:
    """``.<name>.<pid>.<kind>`` next to ``path``: a staged or a previous version of it."""
    directory, name = osp.split(osp.abspath(path))
    return osp.join(directory, f'.{name}.{pid}.{kind}')


def check_replaceable(path: str, own_names: Collection[str]) -> None:
    """Raise unless ``path`` is absent or a directory holding only ``own_names``.

    Raises:
        ValueError: ``path`` is a symbolic link, not a directory, or holds other entries.
    """
    if not osp.lexists(path):
        return
    if osp.islink(path) or not osp.isdir(path):
        raise ValueError(f'{path!r} exists and is not a directory; give a new or an '
                         'earlier output directory')
    others = sorted(set(os.listdir(path)) - set(own_names))
    if others:
        raise ValueError(f'{path!r} holds {others}, which it would replace as a whole: only '
                         f'a directory holding {sorted(own_names)} is replaced; give a new '
                         'directory, or move those away')


def _recover(path: str) -> None:
    """Sweep what interrupted replacements of ``path`` left next to it.

    A previous version renamed aside (``.<name>.<pid>.previous``) is put back if ``path``
    is missing (a kill between the two renames of the fallback), else removed; staged
    versions (``.<name>.<pid>.staging``) are removed. Only real directories of those exact
    names, whose process is gone, are touched.
    """
    directory, name = osp.split(osp.abspath(path))
    pattern = re.compile(re.escape(f'.{name}.') + r'(?P<pid>\d+)\.(?P<kind>staging|previous)')
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False) or \
                _running_elsewhere(int(match['pid'])):
            continue
        if match['kind'] == 'previous' and not osp.lexists(path):
            os.rename(entry.path, path)
        else:
            shutil.rmtree(entry.path)


@contextlib.contextmanager
def replaced_directory(path: str, own_names: Collection[str]) -> Iterator[str]:
    """Write a new version of the directory ``path`` and put it in place as a whole.

    Yields an empty staging directory next to ``path`` (``.<name>.<pid>.staging``). When
    the block ends without error, its entries are flushed (a sub-folder's own files must
    be flushed by their writer) and it takes ``path``'s place in one atomic exchange, or
    where the file system cannot exchange, by two renames (:func:`_recover` repairs a
    kill between them). An error leaves ``path`` as it was, and no staging directory.

    Args:
        path: The directory: absent, or holding only ``own_names`` (see
            :func:`check_replaceable`).
        own_names: The names a directory to replace may hold.
    """
    path = osp.abspath(path)
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    _recover(path)
    check_replaceable(path, own_names)
    staging = _aside(path, 'staging', os.getpid())
    os.mkdir(staging)
    try:
        yield staging
        for entry in os.scandir(staging):  # files and folders written inside are flushed
            if entry.is_dir(follow_symlinks=False):
                fsync_directory(entry.path)
            else:
                fsync_file(entry.path)
        fsync_directory(staging)
        check_replaceable(path, own_names)
        if not osp.lexists(path):
            os.rename(staging, path)
        elif exchange_paths(staging, path):
            fsync_directory(directory)
            shutil.rmtree(staging)  # the old version
        else:
            previous = _aside(path, 'previous', os.getpid())
            os.rename(path, previous)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(previous, path)
                raise
            fsync_directory(directory)
            shutil.rmtree(previous)
        fsync_directory(directory)
    except BaseException:
        if osp.isdir(staging) and not osp.islink(staging):
            shutil.rmtree(staging)
        raise


__all__ = ['atomic_write', 'check_replaceable', 'create_temporary', 'exchange_paths',
           'fsync_directory', 'fsync_file', 'remove_if_exists', 'remove_regular_file',
           'remove_stale_temporaries', 'replaced_directory', 'temporary_path',
           'write_error', 'write_text_atomically']
