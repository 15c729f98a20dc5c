"""Crafted checkpoints, each carrying one attack with a harmless, visible effect."""
import pathlib
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
