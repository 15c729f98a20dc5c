"""A ``CheckpointHook`` that loses no run to a kill, a preemption or a full disk."""
import atexit
import multiprocessing
import multiprocessing.synchronize
import os
import os.path as osp
import re
import signal
import stat
import string
import threading
from collections import deque
from typing import Callable, Dict, List, NoReturn, Optional

import torch
from mmengine.dist import all_reduce, barrier, get_dist_info, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from torch.utils.data import DataLoader

from .fileio import (
    create_temporary,
    fsync_directory,
    fsync_file,
    remove_if_exists,
    remove_regular_file,
    remove_stale_temporaries,
    temporary_path,
    write_error,
    write_text_atomically,
)

#: Exit status of a run stopped by SIGTERM: 128 + 15, what a process killed by SIGTERM
#: reports, so that Slurm/Kubernetes see an unfinished job (0 would mark it complete and
#: it would never be resumed).
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
#: The file naming the latest checkpoint, in the work dir.
LAST_CHECKPOINT = 'last_checkpoint'

#: ``meta`` key of a checkpoint saved when SIGTERM interrupted a validation: resuming it
#: runs that validation again before training goes on.
VALIDATION_PENDING = 'validation_pending'


class IgnoreSigtermInWorker:
    """A dataloader ``worker_init_fn``: ignore SIGTERM until the main process exits.

    Slurm signals every process of a job step: a dataloader worker killed by that
    SIGTERM takes the run down before the main process can save. With this, a worker
    ignores SIGTERM until ``exiting`` is set (at the main process's exit, before
    :mod:`multiprocessing` terminates its children with SIGTERM), then calls the
    loader's own ``worker_init_fn``.
    """

    def __init__(self, worker_init_fn: Optional[Callable[[int], None]],
                 exiting: multiprocessing.synchronize.Event) -> None:
        self.worker_init_fn = worker_init_fn
        self.exiting = exiting

    def _on_sigterm(self, signum: int, frame) -> None:
        if self.exiting.is_set():
            os._exit(0)

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)


#: One ``exiting`` event per multiprocessing start method, set at this process's exit.
_EXITING: Dict[str, multiprocessing.synchronize.Event] = {}


def ignore_sigterm_in_workers(loader: DataLoader) -> None:
    """Make ``loader``'s workers ignore SIGTERM until this process exits (once per loader).

    Takes effect for workers started afterwards: call it before the loader is iterated
    (persistent workers start at the first iteration).
    """
    if loader.num_workers == 0 or isinstance(loader.worker_init_fn, IgnoreSigtermInWorker):
        return
    context = loader.multiprocessing_context or multiprocessing.get_context()
    method = context.get_start_method()
    if method not in _EXITING:
        _EXITING[method] = context.Event()
        atexit.register(_EXITING[method].set)  # runs before multiprocessing's own atexit
    loader.worker_init_fn = IgnoreSigtermInWorker(loader.worker_init_fn, _EXITING[method])


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments), saving so that no run is lost.

    - A checkpoint is written to a temporary file (:func:`~.fileio.temporary_path`),
      fsynced and renamed into place, then ``last_checkpoint`` is replaced the same way,
      and only then are the checkpoints beyond ``max_keep_ckpts`` and the previous best
      removed: a kill at any point leaves a complete checkpoint that ``last_checkpoint``
      names (the stock hook removes the old checkpoint first and writes in place).
    - A failed write (full disk, quota, I/O error) raises an ``OSError`` naming the
      directory, the free space and the size of the previous checkpoint, and leaves the
      previous checkpoint, ``last_checkpoint`` and no temporary file behind.
    - File names read back from a resumed checkpoint's ``message_hub.runtime_info`` are
      used only if they name regular files in the checkpoint directory named as this hook
      names checkpoints (:meth:`is_checkpoint_name`), and the hook removes only regular
      files it named: a crafted checkpoint cannot make the run delete anything else.
      Temporaries of interrupted saves are removed at the start.
    - On SIGTERM (preemption) the run finishes its iteration (or, in a
      ``PerConfigValLoop``, the current configuration or BN calibration batch), saves a
      resumable checkpoint (in a validation: marked :data:`VALIDATION_PENDING`, so that
      the resumed run validates again), logs the command that resumes it and exits with
      :data:`PREEMPTED_EXIT_CODE`. Under DDP every rank stops at the same point. The
      run's dataloader workers ignore SIGTERM until the main process exits
      (:func:`ignore_sigterm_in_workers`), so a signal to every process of the job
      (Slurm) is survived too.

    Remote backends (``backend_args``, ``out_dir`` on object storage) keep the order of
    writing and removing but cannot rename: their files are written in place.

    Args:
        save_on_sigterm: Whether to catch SIGTERM as described above.
        **kwargs: ``CheckpointHook`` arguments.
    """

    def __init__(self, save_on_sigterm: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_on_sigterm = save_on_sigterm
        self._terminate = False
        self._previous_handler: Optional[object] = None
        self._handling_sigterm = False
        self._validation_pending_at: Optional[int] = None

    # ---------------------------------------------------------------- resume
    def before_train(self, runner) -> None:
        """Drop file names outside the checkpoint directory, then set up as the stock hook."""
        hub = runner.message_hub
        ids = hub.runtime_info.get('keep_ckpt_ids')
        if ids is not None and not (isinstance(ids, list) and all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)):
            runner.logger.warning(f'ignoring keep_ckpt_ids {ids!r} of the resumed checkpoint: '
                                  'a list of integers >= 0 is allowed')
            hub.pop_info('keep_ckpt_ids')
        super().before_train(runner)  # sets self.out_dir, trims keep_ckpt_ids
        if is_main_process() and self._is_local():
            for directory in dict.fromkeys((self.out_dir, runner.work_dir)):
                for partial in remove_stale_temporaries(directory, self.is_checkpoint_name):
                    runner.logger.warning(f'removed {partial}, left by an interrupted save')
        for key in [k for k in hub.runtime_info if k == 'last_ckpt' or k.startswith('best_ckpt')]:
            path = hub.runtime_info[key]
            if isinstance(path, str) and self._is_own_checkpoint(path):
                continue
            runner.logger.warning(
                f'ignoring {key} {path!r} of the resumed checkpoint: only regular files '
                f'inside {self.out_dir} named as this hook names checkpoints '
                f'({self.filename_tmpl!r} with a number, best_<metric>_ before it) are allowed')
            hub.pop_info(key)
            if key == 'best_ckpt' and getattr(self, 'best_ckpt_path', None) is not None:
                self.best_ckpt_path = None
            elif key.startswith('best_ckpt_') and hasattr(self, 'best_ckpt_path_dict'):
                self.best_ckpt_path_dict[key[len('best_ckpt_'):]] = None
        if self.save_on_sigterm and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._handling_sigterm = True
            self._protect_loaders(runner)
        if self._validation_pending_at == runner.iter and runner.val_loop is not None:
            runner.logger.warning(f'the checkpoint was saved when SIGTERM interrupted the '
                                  f'validation after iteration {runner.iter}: validating again')
            runner.val_loop.run()
        self._validation_pending_at = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Note a checkpoint saved in an interrupted validation (see ``before_train``)."""
        meta = checkpoint.get('meta', {})
        self._validation_pending_at = meta.get('iter') if meta.get(VALIDATION_PENDING) else None

    def before_val(self, runner) -> None:
        """Protect the loaders the validation built (its BN calibration loader)."""
        if self._handling_sigterm:
            self._protect_loaders(runner)

    @staticmethod
    def _protect_loaders(runner) -> None:
        """Every dataloader of the run built so far ignores SIGTERM in its workers: the
        training and validation loops' and the per-configuration validation's calibration
        loader (built when the validation starts, before ``before_val``)."""
        for loop in (runner.train_loop, runner.val_loop):
            for name in ('dataloader', 'calibration_loader'):
                loader = getattr(loop, name, None)
                if isinstance(loader, DataLoader):
                    ignore_sigterm_in_workers(loader)

    def after_train(self, runner) -> None:
        """Restore the SIGTERM handler; publish as the stock hook."""
        if self._handling_sigterm:  # (None: a handler not set from Python)
            signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
            self._handling_sigterm = False
        super().after_train(runner)

    # ---------------------------------------------------------------- saving
    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Save checkpoint ``step``; then point ``last_checkpoint`` at it; then trim."""
        outdated: List[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            # The checkpoint lists the ids still on disk while it is written, so that a
            # run resumed from it removes the ones a kill left behind.
            ids = list(self.keep_ckpt_ids) + [step]
            runner.message_hub.update_info('keep_ckpt_ids', ids)
            outdated = ids[:-self.max_keep_ckpts]
            self.keep_ckpt_ids = deque(ids[-self.max_keep_ckpts:], self.max_keep_ckpts)
        self._write_latest(runner, self.filename_tmpl.format(step), meta, self.by_epoch)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        if not is_main_process():
            return
        self._mark_last(runner)
        for old in outdated:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if path != self.last_ckpt:
                self._remove(path)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        """The stock logic, removing the previous best only once the new one is saved."""
        if not self.save_best:
            return
        cur_type, cur_time = ('epoch', runner.epoch) if self.by_epoch else ('iter', runner.iter)
        ckpt_filename = self.filename_tmpl.format(cur_time)
        meta = dict(epoch=runner.epoch, iter=runner.iter)
        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [list(metrics.keys())[0]])
        single = len(self.key_indicators) == 1
        replaced, updated = [], False
        for key_indicator, rule in zip(self.key_indicators, self.rules):
            suffix = '' if single else f'_{key_indicator}'
            score = metrics[key_indicator]
            best = runner.message_hub.get_info(f'best_score{suffix}', self.init_value_map[rule])
            if score is None or not self.is_better_than[key_indicator](score, best):
                continue
            updated = True
            runner.message_hub.update_info(f'best_score{suffix}', score)
            name = f'best_{key_indicator}_{ckpt_filename}'.replace('/', '_')
            path = self.file_backend.join_path(self.out_dir, name)
            previous = self.best_ckpt_path if single else self.best_ckpt_path_dict[key_indicator]
            if single:
                self.best_ckpt_path = path
            else:
                self.best_ckpt_path_dict[key_indicator] = path
            runner.message_hub.update_info(f'best_ckpt{suffix}', path)
            self._write(runner, name, save_optimizer=False, save_param_scheduler=False,
                        meta=meta, by_epoch=False)
            runner.logger.info(f'The best checkpoint with {score:0.4f} {key_indicator} '
                               f'at {cur_time} {cur_type} is saved to {name}.')
            if previous and previous != path:
                replaced.append(previous)
        # Save the latest checkpoint again: it names the new best checkpoint(s).
        if updated and self.last_ckpt is not None:
            self._save_checkpoint_with_step(runner, cur_time, meta)
        if is_main_process():
            for previous in replaced:
                if self._remove(previous):
                    runner.logger.info(f'The previous best checkpoint {previous} is removed')

    def _write(self, runner, filename: str, **kwargs) -> None:
        """``runner.save_checkpoint`` to a temporary file, fsynced and renamed into place."""
        previous = self._last_checkpoint(runner)
        if not self._is_local():
            runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                                   backend_args=self.backend_args, **kwargs)
            return
        path = osp.join(self.out_dir, filename)
        partial = temporary_path(path)
        try:
            if is_main_process():  # (mmengine saves on the main process only)
                os.makedirs(self.out_dir, exist_ok=True)
                create_temporary(partial)
            runner.save_checkpoint(self.out_dir, osp.basename(partial),
                                   self.file_client_args, backend_args=self.backend_args,
                                   **kwargs)
            if is_main_process():
                fsync_file(partial)
                os.replace(partial, path)
                fsync_directory(self.out_dir)
        except FileExistsError:  # something not ours has the temporary's name
            raise
        except OSError as error:
            remove_if_exists(partial)
            raise OSError(error.errno, self._write_error(filename, previous, error)) from error
        except BaseException:
            remove_if_exists(partial)
            raise

    def _mark_last(self, runner) -> None:
        """Point ``last_checkpoint`` at the checkpoint just written (atomically)."""
        write_text_atomically(osp.join(runner.work_dir, LAST_CHECKPOINT), self.last_ckpt)

    @staticmethod
    def _last_checkpoint(runner) -> Optional[str]:
        """The checkpoint ``last_checkpoint`` names, if it is a file."""
        marker = osp.join(runner.work_dir, LAST_CHECKPOINT)
        if not osp.isfile(marker):
            return None
        with open(marker) as f:
            path = f.read().strip()
        return path if osp.isfile(path) else None

    def _write_error(self, filename: str, previous: Optional[str], error: OSError) -> str:
        """What failed, where, the free space and what the previous checkpoint takes."""
        need = (f'the previous checkpoint {previous} takes {osp.getsize(previous) / 2**20:.1f} '
                'MiB' if previous else 'no previous checkpoint to compare with')
        kept = f'last_checkpoint still names {previous}' if previous else 'no earlier one'
        return (write_error(error, f'checkpoint {filename}', self.out_dir,
                            'resume with --resume') + f', {need}; {kept}')

    def _remove(self, path: str) -> bool:
        """Remove a checkpoint this hook wrote (a regular file); whether there was one."""
        if self._is_local():
            return remove_regular_file(path)
        if not self.file_backend.isfile(path):
            return False
        self.file_backend.remove(path)
        return True

    def _is_local(self) -> bool:
        return isinstance(getattr(self.file_backend, 'client', self.file_backend), LocalBackend)

    def is_checkpoint_name(self, name: str) -> bool:
        """Whether this hook names files ``name``: ``filename_tmpl`` with a number,
        ``best_<metric>_`` before it, ``iter_N.pth`` (saved on SIGTERM) or
        ``last_checkpoint``."""
        template = ''.join(re.escape(literal) + (r'\d+' if field is not None else '')
                           for literal, field, _, _ in string.Formatter().parse(
                               self.filename_tmpl))
        return name == LAST_CHECKPOINT or re.fullmatch(
            rf'(best_[^/]+_)?{template}|iter_\d+\.pth', name) is not None

    def _is_own_checkpoint(self, path: str) -> bool:
        """Whether ``path`` is a regular file in the checkpoint directory named as this hook
        names checkpoints (a link, a directory or any other name is not)."""
        directory, name = osp.split(path)
        if name == LAST_CHECKPOINT or not self.is_checkpoint_name(name):
            return False
        if not self._is_local():
            return directory == self.out_dir.rstrip('/')
        try:
            return osp.samefile(directory, self.out_dir) and \
                stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:  # missing
            return False

    # ------------------------------------------------------------- preemption
    def _on_sigterm(self, signum: int, frame) -> None:
        self._terminate = True

    def _stop_requested(self) -> bool:
        """Whether SIGTERM reached any rank; every rank calls it at the same points."""
        if not self._handling_sigterm:
            return False
        stop = torch.tensor([int(self._terminate)])
        if get_dist_info()[1] > 1:
            all_reduce(stop, op='max')
        return bool(stop.item())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Save as the stock hook; after a SIGTERM on any rank, save and exit (all ranks)."""
        before = self.last_ckpt
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not self._stop_requested():
            return
        step = runner.iter + 1
        if self.last_ckpt == before:  # not saved at this iteration already
            self._save_preempted(runner, step)
        self._stop(runner, f'after iteration {step}')

    def before_val_config(self, runner, position: int, config) -> None:
        """``PerConfigValLoop``, before each configuration: stop after a SIGTERM."""
        self._stop_in_validation(runner, f'before configuration {position}/'
                                         f'{len(runner.val_loop.grid)}')

    def after_val_calibration_iter(self, runner, position: int, batch_idx: int,
                                   config) -> None:
        """``PerConfigValLoop``, after each BN calibration batch: stop after a SIGTERM."""
        self._stop_in_validation(runner, f'in the BN calibration of configuration {position}/'
                                         f'{len(runner.val_loop.grid)}, after batch '
                                         f'{batch_idx + 1}')

    def _stop_in_validation(self, runner, where: str) -> None:
        """After a SIGTERM on any rank: save a checkpoint that validates again, and exit.

        (Its BN statistics are those of the configuration being evaluated; the resumed
        run calibrates every configuration again.)
        """
        if not self._stop_requested():
            return
        self._save_preempted(runner, runner.iter, validation_pending=True)
        self._stop(runner, f'during the validation after iteration {runner.iter} ({where}; '
                           'the resumed run validates again)')

    def _stop(self, runner, when: str) -> NoReturn:
        """Log the command that resumes the run and leave, every rank together."""
        config = runner.cfg.filename or 'CONFIG'
        world_size = get_dist_info()[1]
        launcher = (f' (under the same launcher: tools/dist_train.sh {config} '
                    f'{world_size} --work-dir {runner.work_dir} --resume)'
                    if world_size > 1 else '')
        runner.logger.warning(
            f'stopped by SIGTERM {when}; resume with: python tools/train.py {config} '
            f'--work-dir {runner.work_dir} --resume{launcher}')
        if world_size > 1:  # every rank leaves together, rank 0's save complete
            barrier()  # tools/train.py then frees the model and the group, in that order
        raise SystemExit(PREEMPTED_EXIT_CODE)

    def _save_preempted(self, runner, step: int, validation_pending: bool = False) -> None:
        """A checkpoint after iteration ``step``, named by ``last_checkpoint`` (marked
        :data:`VALIDATION_PENDING` when saved in a validation)."""
        filename = f'iter_{step}.pth' if self.by_epoch else self.filename_tmpl.format(step)
        runner.logger.warning(f'SIGTERM: saving {filename} after iteration {step}')
        meta = dict(epoch=runner.epoch, iter=step)
        if validation_pending:
            meta[VALIDATION_PENDING] = True
        if not self.by_epoch:
            self._save_checkpoint_with_step(runner, step, meta)
            return
        # Epoch-numbered names cannot hold it: save it aside from max_keep_ckpts.
        self._write_latest(runner, filename, meta, by_epoch=False)
        if is_main_process():
            self._mark_last(runner)

    def _write_latest(self, runner, filename: str, meta: dict, by_epoch: bool) -> None:
        """Write the latest (resumable) checkpoint, the one ``last_ckpt`` names."""
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, filename, save_optimizer=self.save_optimizer,
                    save_param_scheduler=self.save_param_scheduler, meta=meta,
                    by_epoch=by_epoch, **self.args)
