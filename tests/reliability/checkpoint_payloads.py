"""Crafted checkpoints, each carrying one attack with a harmless, visible effect."""
import pathlib
import zipfile
from typing import Any, Callable, Dict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

#: Elements of the object array a 2 KB file asks for (the attack used 3e8).
HUGE = 30_000_000


class _Reduce:
    """Pickles as ``function(*args)`` followed by ``state``, as numpy's objects do."""

    def __init__(self, function: Callable, args: tuple, state: Any = None) -> None:
        self.reduced = (function, args) if state is None else (function, args, state)

    def __reduce__(self):
        return self.reduced


def object_flagged_dtype_array() -> _Reduce:
    """A float64 array whose dtype state claims object items: numpy dereferences its bytes."""
    dtype = _Reduce(np.dtype, ('f8', False, True), (3, '<', None, None, None, -1, -1, 0x3f))
    return _Reduce(_reconstruct, (np.ndarray, (0,), b'b'),
                   (1, (1,), dtype, False, b'\x41' * 8))


def huge_object_array() -> _Reduce:
    """An empty-looking array of ``HUGE`` object pointers."""
    return _Reduce(_reconstruct, (np.ndarray, (HUGE,), b'O'))


def shared_bytes_arrays(copies: int = 64, size: int = 1 << 16) -> list:
    """Many arrays over one memoized byte string: memory grows with ``copies``."""
    data = bytes(size)
    return [_Reduce(_reconstruct, (np.ndarray, (0,), b'b'),
                    (1, (size // 8,), np.dtype('f8'), False, data)) for _ in range(copies)]


def stride_zero_tensor() -> torch.Tensor:
    """One stored element viewed as ``HUGE`` elements."""
    return torch.ones(1).expand(HUGE)


def save_history_buffer_swapping_statistics(path: pathlib.Path) -> pathlib.Path:
    """A checkpoint whose buffer's pickled statistics map 'mean' to ``HistoryBuffer.max``."""
    buffer = HistoryBuffer([1.0, 2.0, 3.0], [1, 1, 1])
    table = HistoryBuffer._statistics_methods
    HistoryBuffer._statistics_methods = {'mean': HistoryBuffer.max}  # pickled as the table
    try:
        return save(path, {'message_hub': {'log_scalars': {'loss': buffer}}})
    finally:
        HistoryBuffer._statistics_methods = table


def config_writing(marker: pathlib.Path) -> str:
    """A Python config that writes ``marker`` when executed."""
    return f'import pathlib\npathlib.Path({str(marker)!r}).write_text("executed")\nx = 1\n'


def save(path: pathlib.Path, extra: Dict[str, Any]) -> pathlib.Path:
    """A checkpoint with a small state dict plus ``extra``."""
    torch.save({'state_dict': {'w': torch.ones(2)}, **extra}, path)
    return path


# Payloads that the loader must bound before unpickling (harmless sizes: the ratio of what
# they ask for to their file size is what counts).
def big_bytearray(size: int = 50_000_000) -> _Reduce:
    """``bytearray(size)``: an allowed call that allocates ``size`` bytes from a few."""
    return _Reduce(bytearray, (size,))


def shared_lists(depth: int) -> list:
    """``x = [x, x]`` nested ``depth`` deep: linear in the file, 2**depth paths."""
    node: list = []
    for _ in range(depth):
        node = [node, node]
    return node


def shared_tuples(depth: int) -> tuple:
    """``x = (x, x)`` nested ``depth`` deep (a walk that rebuilds tuples doubles per level)."""
    node: tuple = ()
    for _ in range(depth):
        node = (node, node)
    return node


def deep_tuple_key_pickle(depth: int) -> bytes:
    """A protocol-2 pickle of ``{((...(),),): None}``: a tuple ``depth`` deep as a dict key.

    Python's pickler recurses too deeply to write it; these are its opcodes.
    """
    return b'\x80\x02})' + b'\x85' * depth + b'Ns.'


def with_data_pickle(path: pathlib.Path, data_pickle: bytes) -> pathlib.Path:
    """Replace the pickle of torch checkpoint ``path`` (its storages stay)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(name, data_pickle if name.endswith('/data.pkl') else data)
    return path


def deflated(path: pathlib.Path) -> pathlib.Path:
    """Rewrite checkpoint ``path`` with DEFLATE-compressed members (torch reads them)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path
