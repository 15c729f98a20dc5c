"""Safe checkpoint loading: ``weights_only=True`` everywhere, mmengine's own checkpoints included.

``torch.load`` defaults to ``weights_only=True`` since torch 2.6: only tensors, plain Python
containers and scalars, and explicitly allow-listed globals are unpickled, so a checkpoint
cannot run code. mmengine 0.10.7 checkpoints carry a few other objects in their message
hub (found by saving a real checkpoint and loading it): ``HistoryBuffer`` logs, which hold
numpy ``float64`` / ``int64`` arrays, a numpy ``float64`` scalar (the ETA) and, pickled with
protocol 2, ``getattr(HistoryBuffer, 'mean')`` and the like for its statistics methods.
Without them ``resume`` and ``load_from`` fail. :func:`allow_mmengine_checkpoint_classes`
allow-lists exactly these; ``getattr`` itself stays refused: a narrow stand-in resolves
only ``HistoryBuffer``'s default statistics.

mmengine downloads ``http(s)://``, ``torchvision://`` and ``open-mmlab://`` checkpoints
through ``torch.hub.load_state_dict_from_url``, whose default is ``weights_only=False``;
:func:`load_urls_weights_only` makes those loads ``weights_only`` too.
"""
import os
import pickle
import re
from typing import Any, List, Union

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.logging import HistoryBuffer

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

#: Statistics methods that ``HistoryBuffer`` pickles by reference.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stand-in for ``getattr`` while unpickling: only ``HistoryBuffer``'s statistics."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refused getattr({owner!r}, {name!r}) in a checkpoint: only HistoryBuffer '
        f'statistics {HISTORY_BUFFER_STATISTICS} are allowed')


def allow_mmengine_checkpoint_classes() -> None:
    """Allow-list, for ``weights_only`` loading, the objects mmengine's checkpoints carry.

    Idempotent. Numpy's array and scalar constructors are registered under both their
    numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) paths, so checkpoints saved
    with either load with the other.
    """
    numpy_constructors = [(fn, f'numpy{core}.multiarray.{fn.__name__}')
                          for fn in (_reconstruct, scalar) for core in ('.core', '._core')]
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (_history_buffer_statistic, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.int64)),
        *numpy_constructors,
    ])


def _load_url_weights_only(url: str, model_dir: Union[str, None] = None,
                           map_location: Any = None, progress: bool = True,
                           **kwargs) -> Any:
    return torch.hub.load_state_dict_from_url(url, model_dir=model_dir,
                                              map_location=map_location, progress=progress,
                                              weights_only=True, **kwargs)


def load_urls_weights_only() -> None:
    """Make mmengine's URL checkpoint loaders (http, torchvision, open-mmlab) ``weights_only``.

    They all call ``mmengine.runner.checkpoint.load_url``, which is
    ``torch.hub.load_state_dict_from_url`` with its default ``weights_only=False``.
    """
    mmengine_checkpoint.load_url = _load_url_weights_only


def _load_local_safely(filename: str, map_location: Any = None) -> Any:
    return load_checkpoint_safely(os.path.expanduser(filename), map_location)


def load_local_checkpoints_safely() -> None:
    """Make mmengine load local checkpoints with :func:`load_checkpoint_safely`.

    Its own local loader calls ``torch.load`` directly: a truncated or corrupt file fails
    with torch's internal message (e.g. ``PytorchStreamReader failed reading zip
    archive``) that names neither the file nor the problem. ``resume``, ``load_from``
    and ``init_cfg`` checkpoints all go through this loader.
    """
    mmengine_checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=_load_local_safely,
                                                         force=True)


def _reason(error: Exception) -> str:
    """The informative line of a loading error."""
    message = str(error).split('WeightsUnpickler error:')[-1].strip()
    return f'{type(error).__name__}: {message.splitlines()[0] if message else "(no message)"}'


def _refused_globals(path: str, error: Exception) -> List[str]:
    """The globals of ``path`` that ``weights_only`` loading refuses (empty if none found)."""
    try:
        refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an unreadable file: fall back to the message
        refused = []
    if not refused:
        # Objects built dynamically while unpickling are only named in the error.
        refused = re.findall(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>|refused (getattr\(.*?\))",
                             str(error))
        refused = [next(filter(None, groups)) for groups in refused]
    return sorted(set(refused))


def load_checkpoint_safely(path: Union[str, os.PathLike],
                           map_location: Any = 'cpu') -> Any:
    """``torch.load(path, weights_only=True)`` with errors that say what went wrong.

    Args:
        path: A checkpoint file saved with ``torch.save``.
        map_location: As for ``torch.load``.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: The checkpoint carries a pickled object that is not
            allow-listed (a callable, a custom class); the message names it.
        ValueError: The file is not a readable checkpoint (truncated or corrupt).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}')
    allow_mmengine_checkpoint_classes()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(path, error)
        if not refused:
            raise ValueError(f'{path!r} is not a readable checkpoint (truncated or corrupt): '
                             f'{_reason(error)}') from error
        raise pickle.UnpicklingError(
            f'refused to load {path!r}: it carries pickled objects that are not allowed in a '
            f'weights-only checkpoint: {", ".join(refused)}. Allowed are tensors, plain Python '
            'containers and scalars, and the mmengine classes listed in '
            'mutualnet_mm.engine.checkpoint. Never load it with weights_only=False unless '
            'you trust its source.') from error
    except Exception as error:  # torch raises many types for a bad file
        raise ValueError(f'{path!r} is not a readable checkpoint (truncated or corrupt): '
                         f'{_reason(error)}') from error


__all__ = ['HISTORY_BUFFER_STATISTICS', 'allow_mmengine_checkpoint_classes',
           'load_checkpoint_safely', 'load_local_checkpoints_safely', 'load_urls_weights_only']
