"""Hooks for resuming and loading checkpoints reliably."""
import re
from typing import List, Mapping, Optional

import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from torch import Tensor, nn

#: Key of the per-rank generator states in a checkpoint.
RANDOM_STATE_KEY = 'torch_random_state'


def torch_random_state() -> dict:
    """This process's torch generator states: CPU, and the current CUDA device's if used."""
    state = {'cpu': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_torch_random_state(state: dict) -> None:
    """Restore states saved by :func:`torch_random_state`."""
    torch.set_rng_state(state['cpu'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


@HOOKS.register_module()
class TorchRandomStateHook(Hook):
    """Saves every rank's torch generator state in checkpoints; restores it on resume.

    On resume mmengine re-seeds the generators with the run's seed and replays the data
    up to the checkpoint (iteration-based loops skip the trained batches; dataloader
    workers are re-seeded from the seed), so the data pipeline's numpy/``random`` draws
    come out as in an uninterrupted run. The model's own draws (RPN/RoI sampling,
    dropout, ...) use torch's generator, whose state at the checkpoint is lost: this
    hook stores it and restores it right before the first resumed iteration, after the
    dataloader has been set up, or before the resumed validation of a checkpoint saved
    when SIGTERM interrupted one (``SafeCheckpointHook``), which then draws as the
    interrupted one did.

    A checkpoint holds the states taken after the last training iteration or epoch, or
    after the last validation, whichever came last (not mid-validation). Only rank 0
    saves checkpoints, so under DDP the ranks' states are gathered then (a few kilobytes
    per rank).

    The result is exact for iteration-based loops, and for epoch-based loops resumed in
    the first epoch or with ``persistent_workers=False``: persistent dataloader workers
    carry their random streams over from epoch to epoch, and a resumed run restarts them.

    Checkpoints loaded with ``load_from`` (training starting at another iteration than
    the checkpoint's) and checkpoints from another number of processes keep the seed's
    states; the latter with a warning.
    """

    priority = 'VERY_HIGH'  # gather before CheckpointHook (VERY_LOW) saves

    def __init__(self) -> None:
        self._states: Optional[List[dict]] = None
        self._pending: Optional[dict] = None
        self._pending_iter: Optional[int] = None

    def _take(self) -> None:
        state = torch_random_state()
        self._states = all_gather_object(state) if get_dist_info()[1] > 1 else [state]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._take()

    def after_train_epoch(self, runner) -> None:
        self._take()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._take()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runs on rank 0 only (mmengine's save_checkpoint is master_only).
        if self._states is not None:
            checkpoint[RANDOM_STATE_KEY] = self._states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states: Optional[List[dict]] = checkpoint.get(RANDOM_STATE_KEY)
        if states is None:
            return
        rank, world_size = get_dist_info()
        if len(states) != world_size:
            print_log(f'checkpoint holds random states of {len(states)} processes, this run '
                      f'has {world_size}: keeping the seeded states', logger='current',
                      level='WARNING')
            return
        self._pending = states[rank]
        self._pending_iter = checkpoint.get('meta', {}).get('iter')

    def _restore(self, runner) -> None:
        if self._pending is None:
            return
        if runner.iter == self._pending_iter:
            set_torch_random_state(self._pending)
        self._pending = self._pending_iter = None

    def before_val(self, runner) -> None:
        self._restore(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._restore(runner)


class StateDictMismatchError(KeyError, ValueError):
    """A checkpoint lacks a weight of the model or has one it lacks (a ``KeyError``, as
    torch's strict loading names keys; also a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0])


def check_state_dict_fits(model: nn.Module, state_dict: Mapping[str, Tensor],
                          source: str = 'the checkpoint') -> None:
    """Raise unless ``state_dict`` has exactly the model's names and shapes.

    A ``module.`` prefix (DDP) is ignored, and so are missing ``num_batches_tracked``
    counters, as mmengine does. The message names the first mismatch in the model's
    order and counts the rest.

    Raises:
        StateDictMismatchError: a weight is missing or unexpected.
        ValueError: a weight has another shape than the model's.
    """
    loaded = {re.sub(r'^module\.', '', key): value for key, value in state_dict.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in loaded and 'num_batches_tracked' not in k]
    reshaped = [k for k in expected if k in loaded and
                tuple(getattr(loaded[k], 'shape', ())) != tuple(expected[k].shape)]
    unexpected = [k for k in loaded if k not in expected]
    if not (missing or reshaped or unexpected):
        return
    first = next((k for k in expected if k in missing or k in reshaped), None)
    if first in reshaped:
        detail = (f'{first!r} has shape {tuple(loaded[first].shape)} in it and '
                  f'{tuple(expected[first].shape)} in the model')
    elif first is not None:
        detail = f"the model's {first!r} is not in it"
    else:
        detail = f'its {unexpected[0]!r} is not in the model'
    error = ValueError if first in reshaped else StateDictMismatchError
    raise error(
        f'{source} does not fit {type(model).__name__}: {detail} ({len(missing)} missing, '
        f'{len(unexpected)} unexpected, {len(reshaped)} reshaped weights in all). It needs a '
        "checkpoint of this config's architecture; to start training from another model "
        'use load_from, which loads what fits and warns')


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuse a checkpoint whose weights do not fit the model exactly.

    mmengine loads checkpoints with ``strict=False``, only warning about missing,
    unexpected or reshaped weights: resuming or evaluating such a checkpoint would
    silently run a partly random model. ``tools/test.py`` and ``tools/train.py
    --resume`` add this hook; ``load_from`` for training keeps mmengine's warning
    (initializing from another model, e.g. with another number of classes, is common).

    Args:
        filename: The checkpoint's path, for the message (if known).
    """

    priority = 'VERY_HIGH'

    def __init__(self, filename: Optional[str] = None) -> None:
        self.filename = filename

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model
        if is_model_wrapper(model) or isinstance(model, BaseTTAModel):  # loaded as mmengine does
            model = model.module
        source = f'checkpoint {self.filename!r}' if self.filename else 'the checkpoint'
        check_state_dict_fits(model, checkpoint.get('state_dict', checkpoint), source)


__all__ = ['CheckpointMatchHook', 'RANDOM_STATE_KEY', 'TorchRandomStateHook',
           'check_state_dict_fits', 'set_torch_random_state', 'torch_random_state']
