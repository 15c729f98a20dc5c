"""The torch random state of every rank, saved in checkpoints and restored on resume."""
from typing import List, Optional

import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

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


__all__ = ['RANDOM_STATE_KEY', 'TorchRandomStateHook', 'set_torch_random_state',
           'torch_random_state']
