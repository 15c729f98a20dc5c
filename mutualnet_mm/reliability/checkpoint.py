"""Safe checkpoint loading: content is data, never code, never instructions, never a memory bomb.

``torch.load(weights_only=True)`` unpickles only tensors, plain Python containers and
scalars, and explicitly allow-listed globals. mmengine 0.10.7 checkpoints carry a few other
objects in their message hub: ``HistoryBuffer`` logs of numpy arrays, a numpy scalar (the
ETA) and, pickled with protocol 2, ``getattr(HistoryBuffer, 'mean')`` and the like.
Allow-listing numpy's and mmengine's own constructors would let a crafted file rebuild a
dtype with object fields (a crash), an object array of 3e8 items from 2 KB, or rewrite
``HistoryBuffer``'s class-wide statistics table. So each allowed name resolves to a
narrow stand-in that checks its state (:func:`_allow_mmengine_checkpoint_classes`):
numeric dtypes, arrays and scalars whose bytes match their shape (charged to a budget of
the file's size), ``HistoryBuffer`` instance state with the default statistics only,
and ``bytes()`` alone.

:func:`load_checkpoint_safely` also drops ``meta['config']``, which ``Runner.resume``
would execute. Every checkpoint mmengine reads, local or by URL, goes through it once
``mutualnet_mm`` is imported.
"""
import contextvars
import math
import os
import pickle
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

from .checkpoint_scan import CheckpointRefusedError, scan_checkpoint

#: Statistics methods that ``HistoryBuffer`` pickles by reference.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
#: Numpy dtypes a checkpoint may hold (``dtype.str`` without the byte order).
NUMERIC_DTYPES = ('b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8',
                  'c8', 'c16')

# Bytes that numpy arrays may still take in the load in progress (None: no load of
# ``load_checkpoint_safely`` in progress, e.g. a direct ``torch.load``).
_array_budget: contextvars.ContextVar[Optional[List[int]]] = contextvars.ContextVar(
    'mutualnet_mm_array_budget', default=None)


def _refuse(what: str) -> None:
    raise pickle.UnpicklingError(f'refused {what} in a checkpoint')


class CheckedDtype:
    """``numpy.dtype`` as a checkpoint may rebuild it: a plain numeric dtype.

    Numpy pickles a dtype as ``dtype(code, align, copy)`` followed by its state; the state
    is checked to be the canonical one of a numeric dtype before numpy ever sees it.
    """

    code: Optional[str] = None
    byteorder = '='

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(code, str) or code not in NUMERIC_DTYPES:
            _refuse(f'numpy dtype {code!r} (allowed: {", ".join(NUMERIC_DTYPES)})')
        self.code = code

    def __setstate__(self, state: Any) -> None:
        if self.code is None:
            _refuse('a numpy dtype without a type code')
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3
                and state[1] in ('<', '>', '|', '=')
                and state[2:] == (None, None, None, -1, -1, 0)):
            _refuse(f'numpy dtype state {state!r} of {self.code!r} (only plain numeric '
                    'dtypes are allowed)')
        self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        """The numpy dtype."""
        if self.code is None:
            _refuse('a numpy dtype without a type code')
        order = '' if self.byteorder == '|' else self.byteorder
        return np.dtype(order + self.code)


def _as_dtype(value: Any) -> np.dtype:
    if not isinstance(value, CheckedDtype):
        _refuse(f'numpy dtype of type {type(value).__name__}')
    return value.resolve()


def _charge(num_bytes: int) -> None:
    """Charge ``num_bytes`` of array memory to the load in progress."""
    budget = _array_budget.get()
    if budget is None:
        return
    budget[0] -= num_bytes
    if budget[0] < 0:
        _refuse(f'numpy arrays larger in all than the file itself ({num_bytes} more bytes)')


class CheckedArray:
    """``numpy.ndarray`` as a checkpoint may rebuild it; :attr:`array` is the result."""

    array: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            _refuse('a numpy array state that is not (1, shape, dtype, fortran, bytes)')
        _, shape, dtype, fortran, raw = state
        dtype = _as_dtype(dtype)
        if not (isinstance(shape, tuple) and len(shape) <= 32 and
                all(type(n) is int and n >= 0 for n in shape)):
            _refuse(f'numpy array shape {shape!r}')
        if not isinstance(raw, bytes):
            _refuse(f'numpy array data of type {type(raw).__name__} (raw bytes expected)')
        size = math.prod(shape) * dtype.itemsize
        if len(raw) != size:
            _refuse(f'numpy array of shape {shape} and dtype {dtype} with {len(raw)} bytes of '
                    f'data ({size} expected)')
        _charge(size)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(
            shape, order='F' if fortran else 'C').copy()


def _checked_reconstruct(subtype: Any, shape: Any, code: Any) -> CheckedArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct``: an empty array holder."""
    if subtype is not CheckedArray or shape != (0,) or code != b'b':
        _refuse(f'numpy _reconstruct{(subtype, shape, code)!r}')
    return CheckedArray()


def _checked_scalar(dtype: Any, raw: Any = None) -> np.generic:
    """Stand-in for ``numpy.core.multiarray.scalar``: a numeric scalar from its bytes."""
    dtype = _as_dtype(dtype)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        _refuse(f'numpy {dtype} scalar data {raw!r}')
    return np.frombuffer(raw, dtype=dtype)[0]


def _empty_bytes(*args: Any) -> bytes:
    """Stand-in for ``bytes`` while unpickling: pickle writes ``b''`` as ``bytes()``.

    ``bytes(n)`` would allocate ``n`` bytes from a few bytes of file.
    """
    if args:
        _refuse(f'bytes{args!r} (only bytes() is allowed)')
    return b''


def _history(value: Any, name: str) -> np.ndarray:
    array = value.array if isinstance(value, CheckedArray) else None
    if array is None or array.ndim != 1:
        _refuse(f'HistoryBuffer {name} that is not a 1-D numeric array')
    return array


class CheckedHistoryBuffer(HistoryBuffer):
    """``HistoryBuffer`` as a checkpoint may rebuild it: instance data only.

    mmengine's ``HistoryBuffer.__setstate__`` merges the pickled statistics methods into
    the class-wide table shared by every buffer; here they must be the defaults and are
    not merged. The object becomes a plain ``HistoryBuffer`` once its state is checked.
    """

    STATE_KEYS = frozenset({'max_length', '_log_history', '_count_history',
                            'statistics_methods'})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse('HistoryBuffer(...) built with arguments (mmengine pickles its state)')

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not set(state) <= self.STATE_KEYS:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            _refuse(f'HistoryBuffer state {keys} (allowed keys: {sorted(self.STATE_KEYS)})')
        max_length = state.get('max_length', 1000000)
        if type(max_length) is not int or max_length <= 0:
            _refuse(f'HistoryBuffer max_length {max_length!r}')
        methods = state.get('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                name not in HISTORY_BUFFER_STATISTICS or method is not getattr(HistoryBuffer, name)
                for name, method in methods.items()):
            _refuse('HistoryBuffer statistics methods other than the defaults '
                    f'{HISTORY_BUFFER_STATISTICS}')
        log_history = _history(state.get('_log_history'), '_log_history')
        count_history = _history(state.get('_count_history'), '_count_history')
        if len(log_history) != len(count_history):
            _refuse('HistoryBuffer histories of different lengths')
        self.__class__ = HistoryBuffer
        self.__dict__.update(max_length=max_length, _log_history=log_history,
                             _count_history=count_history)


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stand-in for ``getattr`` while unpickling: only ``HistoryBuffer``'s statistics."""
    if owner in (HistoryBuffer, CheckedHistoryBuffer) and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    owner = HistoryBuffer if owner is CheckedHistoryBuffer else owner
    raise pickle.UnpicklingError(
        f'refused getattr({owner!r}, {name!r}) in a checkpoint: only HistoryBuffer '
        f'statistics {HISTORY_BUFFER_STATISTICS} are allowed')


def _allow_mmengine_checkpoint_classes() -> None:
    """Resolve, for ``weights_only`` loading, the globals mmengine's checkpoints name.

    Idempotent. Each name resolves to a checking stand-in (see the module docstring).
    Numpy's names are registered under both their numpy 1 (``numpy.core``) and numpy 2
    (``numpy._core``) paths, so checkpoints saved with either load with the other.
    """
    multiarray = [(function, f'numpy{core}.multiarray.{name}')
                  for core in ('.core', '._core')
                  for function, name in ((_checked_reconstruct, '_reconstruct'),
                                         (_checked_scalar, 'scalar'))]
    torch.serialization.add_safe_globals([
        (CheckedHistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_history_buffer_statistic, 'builtins.getattr'),
        (CheckedArray, 'numpy.ndarray'),
        (CheckedDtype, 'numpy.dtype'),
        (_empty_bytes, 'builtins.bytes'),
        *multiarray,
    ])


def _check_tensor(value: torch.Tensor) -> None:
    """A tensor must have data and be no larger than its storage.

    A stride-0 view of one element with 3e8 elements would take gigabytes once copied; a
    meta tensor of 1e12 elements takes them once moved to a device.
    """
    if value.is_meta:
        _refuse(f'a meta-device tensor of shape {tuple(value.shape)} (tensors need data)')
    if value.numel() * value.element_size() > value.untyped_storage().nbytes():
        _refuse(f'a tensor of shape {tuple(value.shape)} and strides {value.stride()} '
                f'larger than its storage ({value.untyped_storage().nbytes()} bytes)')


def _resolve(value: Any, done: Dict[int, Tuple[Any, Any]]) -> Any:
    """``value`` with array and dtype holders replaced by numpy objects; tensors checked.

    Each object is resolved once however often it is referenced (``done`` maps its id to
    the object and its result, keeping both alive), so shared references cost nothing.
    Dict keys and set members are checked too. The nesting depth was bounded by
    :func:`~mutualnet_mm.reliability.checkpoint_scan.scan_checkpoint`.
    """
    if id(value) in done:
        return done[id(value)][1]
    result = value
    done[id(value)] = (value, result)  # a container reached again inside itself
    if isinstance(value, torch.Tensor):
        _check_tensor(value)
    elif isinstance(value, CheckedArray):
        if value.array is None:
            _refuse('a numpy array without data')
        result = value.array
    elif isinstance(value, CheckedDtype):
        result = value.resolve()
    elif isinstance(value, dict):
        for key in list(value):
            _resolve(key, done)
            value[key] = _resolve(value[key], done)
    elif isinstance(value, list):
        value[:] = [_resolve(item, done) for item in value]
    elif isinstance(value, (set, frozenset)):
        for item in value:
            _resolve(item, done)
    elif type(value) is tuple:
        items = tuple(_resolve(item, done) for item in value)
        if any(new is not old for new, old in zip(items, value)):
            result = items
    done[id(value)] = (value, result)
    return result


def _drop_obeyed_content(checkpoint: Any, path: str) -> None:
    """Remove what mmengine would execute: a config stored in ``meta``."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and 'config' in meta:
        del meta['config']
        print_log(f'{path}: ignored the config stored in its meta (a checkpoint\'s config '
                  'is never executed; the run uses its own config)', logger='current')


def _load_url_weights_only(url: str, model_dir: Optional[str] = None,
                           map_location: Any = None, progress: bool = True,
                           **kwargs) -> Any:
    """mmengine's ``load_url``: download to the hub cache, then :func:`load_checkpoint_safely`."""
    if model_dir is None:
        model_dir = os.path.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir, kwargs.get('file_name') or
                          os.path.basename(urlparse(url).path))
    if not os.path.exists(cached):
        torch.hub.download_url_to_file(url, cached, progress=progress)
    return load_checkpoint_safely(cached, map_location)


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local loader, by :func:`load_checkpoint_safely`.

    Named as mmengine names its loaders: it logs ``Loads checkpoint by <name without
    load_from_> backend``, here ``local``.
    """
    return load_checkpoint_safely(os.path.expanduser(filename), map_location)


def install_safe_loading() -> None:
    """Make every mmengine checkpoint load safe; ``import mutualnet_mm`` calls it.

    Idempotent. Its checkpoints' globals resolve to checking stand-ins
    (:func:`_allow_mmengine_checkpoint_classes`); its URL loaders and its local loader
    (behind ``resume``, ``load_from`` and ``init_cfg``) go through
    :func:`load_checkpoint_safely`.
    """
    _allow_mmengine_checkpoint_classes()
    # The http, torchvision and open-mmlab loaders all call load_url, which is
    # torch.hub.load_state_dict_from_url with its default weights_only=False.
    mmengine_checkpoint.load_url = _load_url_weights_only
    # The stock local loader calls torch.load directly: a truncated or corrupt file fails
    # with torch's internal message, which names neither the file nor the problem.
    mmengine_checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=load_from_local,
                                                         force=True)


def _unreadable(path: str, error: Exception) -> ValueError:
    """The error for a file that is no checkpoint, with the informative line of ``error``."""
    message = str(error).split('WeightsUnpickler error:')[-1].strip()
    return ValueError(f'{path!r} is not a readable checkpoint (truncated or corrupt): '
                      f'{type(error).__name__}: '
                      f'{message.splitlines()[0] if message else "(no message)"}')


def _refused_globals(path: str, error: Exception) -> Sequence[str]:
    """The globals of ``path`` that ``weights_only`` loading refuses (empty if none found)."""
    try:
        refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an unreadable file: fall back to the message
        refused = []
    if not refused:
        # Objects built dynamically while unpickling are only named in the error.
        refused = re.findall(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>|"
                             r'(refused .*? in a checkpoint)|refused (getattr\(.*?\))',
                             str(error))
        refused = [next(filter(None, groups)) for groups in refused]
    return sorted(set(refused))


def load_checkpoint_safely(path: Union[str, os.PathLike],
                           map_location: Any = 'cpu') -> Any:
    """Load a checkpoint as data: ``weights_only``, checked numpy and mmengine objects.

    Args:
        path: A checkpoint file saved with ``torch.save``.
        map_location: As for ``torch.load``.

    Returns:
        The loaded object, with ``meta['config']`` removed (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: The checkpoint carries a pickled object that is not
            allowed (a callable, a custom class, a non-numeric or oversized numpy
            array); the message names it.
        ValueError: The file is not a readable checkpoint (truncated or corrupt).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}')
    _allow_mmengine_checkpoint_classes()
    token = _array_budget.set([os.path.getsize(path)])
    try:
        scan_checkpoint(path)
        checkpoint = _resolve(torch.load(path, map_location=map_location, weights_only=True),
                              {})
    except CheckpointRefusedError as error:
        raise pickle.UnpicklingError(
            f'refused to load {path!r}: it holds {error}. A checkpoint may hold tensors within '
            'their storage, plain containers and scalars, numeric numpy arrays and the mmengine '
            'objects of mutualnet_mm.reliability.checkpoint, together no larger than twice the '
            'file. Never load it with weights_only=False unless you trust its source.'
        ) from error
    except pickle.UnpicklingError as error:
        refused = _refused_globals(path, error)
        if not refused:
            raise _unreadable(path, error) from error
        raise pickle.UnpicklingError(
            f'refused to load {path!r}: it carries pickled objects that are not allowed in a '
            f'weights-only checkpoint: {", ".join(refused)}. Allowed are tensors, plain Python '
            'containers and scalars, numeric numpy arrays and the mmengine objects listed in '
            'mutualnet_mm.reliability.checkpoint. Never load it with weights_only=False unless '
            'you trust its source.') from error
    except RecursionError as error:
        raise pickle.UnpicklingError(f'refused to load {path!r}: containers nested too '
                                     'deeply') from error
    except Exception as error:  # torch raises many types for a bad file
        raise _unreadable(path, error) from error
    finally:
        _array_budget.reset(token)
    _drop_obeyed_content(checkpoint, path)
    return checkpoint


__all__ = ['HISTORY_BUFFER_STATISTICS', 'NUMERIC_DTYPES', 'install_safe_loading',
           'load_checkpoint_safely']
