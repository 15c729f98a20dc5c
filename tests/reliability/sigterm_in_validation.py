"""A hook that sends SIGTERM from inside a per-configuration validation (once).

Imported by a test config's ``custom_imports``: the signal goes out at a fixed point of
the validation after ``after_iter`` training iterations, so a test needs no timing. Only
the first time in a work dir (a marker file there records it), so that a resumed run goes
on.
"""
import os
import signal
from pathlib import Path
from typing import Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SigtermInValidation(Hook):
    """SIGTERM to this process (and others) in configuration ``configuration``.

    Args:
        after_iter: The validation after this many training iterations.
        configuration: Which configuration of the grid (counting from 1).
        calibration_batch: After this BN calibration batch (counting from 0); None: as
            its first evaluation batch starts (a stock hook point).
        to: ``'process'`` (this one), ``'group'`` (its process group: its dataloader
            workers too) or ``'launcher'`` (this one and the process group of its parent,
            e.g. ``dist_train.sh`` and torchrun, which passes it on to every rank).
        rank: The rank that sends it.
    """

    def __init__(self, after_iter: int, configuration: int,
                 calibration_batch: Optional[int] = None, to: str = 'process',
                 rank: int = 0) -> None:
        self.after_iter = after_iter
        self.configuration = configuration
        self.calibration_batch = calibration_batch
        self.to = to
        self.rank = rank
        self._position = 0

    def before_val(self, runner) -> None:
        self._position = 0

    def before_val_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._position += batch_idx == 0
        if self.calibration_batch is None and batch_idx == 0:
            self._send(runner, self._position)

    def after_val_calibration_iter(self, runner, position: int, batch_idx: int,
                                   config) -> None:
        if batch_idx == self.calibration_batch:
            self._send(runner, position)

    def _send(self, runner, position: int) -> None:
        marker = Path(runner.work_dir) / 'sigterm_in_validation_sent'
        if (runner.iter, position, get_rank()) != (self.after_iter, self.configuration,
                                                   self.rank) or marker.exists():
            return
        marker.touch()
        if self.to == 'group':
            os.killpg(os.getpgid(0), signal.SIGTERM)
            return
        if self.to == 'launcher':
            os.killpg(os.getpgid(os.getppid()), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
