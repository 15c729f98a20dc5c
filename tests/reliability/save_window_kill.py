"""A hook that SIGKILLs its own process as a checkpoint is about to be written (once).

Imported by a test config's ``custom_imports``. mmengine's ``CheckpointHook`` has then
already removed the checkpoints beyond ``max_keep_ckpts``; ``SafeCheckpointHook`` has
not (it is about to write the temporary file).
"""
import os
import signal
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillBeforeCheckpointWrite(Hook):
    """SIGKILL this process when the checkpoint after iteration ``at_iter`` is written.

    Only the first time in a work dir (a marker file there records it), so that the
    resumed run goes on.
    """

    def __init__(self, at_iter: int) -> None:
        self.at_iter = at_iter

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        marker = Path(runner.work_dir) / 'killed_before_checkpoint_write'
        if checkpoint['meta']['iter'] == self.at_iter and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
