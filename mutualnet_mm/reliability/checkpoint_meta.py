"""Checks of the ``meta`` fields that mmengine's ``Runner.resume`` reads from a checkpoint.

``resume`` sets the train loop's epoch and iteration from ``meta.epoch`` and
``meta.iter`` and re-seeds numpy and torch with ``meta.seed``, unchecked: an iteration
beyond the schedule resumes, trains nothing and exits 0; a float or a string fails
later without naming the file; a seed of ``2**40`` fails inside numpy. The check runs
when the checkpoint is loaded, before mmengine reads any of them.
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, find_latest_checkpoint

from ..checks import check_int

#: The largest seed numpy accepts (mmengine seeds numpy, ``random`` and torch with it).
MAX_SEED = 2**32 - 1


def check_resume_meta(checkpoint: object, filename: str, max_iters: int,
                      max_epochs: Optional[int] = None) -> None:
    """Raise unless ``checkpoint``'s meta can be resumed within the schedule.

    Args:
        checkpoint: The loaded checkpoint.
        filename: Its file, for messages.
        max_iters: The iterations of the run's schedule.
        max_epochs: Its epochs (``None``: an iteration-based schedule, epochs unchecked).

    Raises:
        ValueError: ``meta`` is not a dict; ``meta.iter`` or ``meta.epoch`` is not an
            integer >= 0 or lies beyond the schedule; ``meta.seed`` is neither absent
            (``None``) nor an integer in ``[0, 2**32 - 1]``. The file and field are named.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        raise ValueError(f'checkpoint {filename!r} has no meta dict (got '
                         f'{type(meta).__name__}); resuming needs meta.epoch and meta.iter, '
                         'as mmengine saves them')
    limits = {'iter': ('max_iters', max_iters), 'epoch': ('max_epochs', max_epochs)}
    for field, (name, limit) in limits.items():
        value = check_int(meta.get(field), f'checkpoint {filename!r}: meta.{field}', 0)
        if limit is not None and value > limit:
            raise ValueError(f'checkpoint {filename!r}: meta.{field} {value} is beyond the '
                             f'schedule of this run ({name} {limit}), so resuming would train '
                             f'nothing; allowed: 0 to {limit}. Resume a checkpoint of this '
                             'schedule, or lengthen it')
    seed = meta.get('seed')
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or
                             not 0 <= seed <= MAX_SEED):
        raise ValueError(f'checkpoint {filename!r}: meta.seed is {seed!r}; allowed: an integer '
                         f'from 0 to 2**32 - 1 ({MAX_SEED}, the seeds numpy accepts) or none')


@HOOKS.register_module()
class ResumeMetaCheckHook(Hook):
    """Refuse to resume a checkpoint whose meta ``Runner.resume`` cannot use.

    Runs :func:`check_resume_meta` against the train loop's schedule as soon as the
    checkpoint is loaded, before mmengine reads its meta. ``tools/train.py --resume``
    adds this hook (a ``load_from`` checkpoint starts a new schedule: its meta is not
    used).

    Args:
        filename: The checkpoint resumed (None: the latest one in the work dir, as
            mmengine's automatic resume finds it).
    """

    priority = 'VERY_HIGH'

    def __init__(self, filename: Optional[str] = None) -> None:
        self.filename = filename

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        loop = runner.train_loop
        check_resume_meta(checkpoint, self.filename or find_latest_checkpoint(runner.work_dir),
                          loop.max_iters,
                          loop.max_epochs if isinstance(loop, EpochBasedTrainLoop) else None)


__all__ = ['MAX_SEED', 'ResumeMetaCheckHook', 'check_resume_meta']
