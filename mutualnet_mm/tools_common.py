"""Small helpers shared by the command-line tools."""
import argparse
import datetime
import gc
import os
import os.path as osp
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from .evaluation.locations import run_work_dir

#: Parameter-scheduler settings counted in the schedule's unit (epochs, or iterations).
SCHEDULE_KEYS = ('begin', 'end', 'T_max', 'milestones', 'step_size')


def load_tool_config(args: argparse.Namespace) -> Config:
    """The config of a tool run: checked, overridden, launcher and work dir set."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    check_config_file(args.config)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        written = schedule_length(cfg)
        cfg.merge_from_dict(args.cfg_options)
        if not any(key.split('.')[0] == 'param_scheduler' for key in args.cfg_options):
            follow_schedule_length(cfg, written)
    setup_cpu_distributed(cfg)
    set_default_work_dir(cfg, args.config, args.work_dir)
    return cfg


def schedule_length(cfg: Config) -> Optional[Tuple[str, int]]:
    """``('max_epochs', n)`` or ``('max_iters', n)`` from ``cfg.train_cfg`` (None without)."""
    train_cfg = cfg.get('train_cfg') or {}
    return next(((key, train_cfg[key]) for key in ('max_epochs', 'max_iters')
                 if train_cfg.get(key) is not None), None)


def _scaled(value: int, ratio: float) -> int:
    """``value * ratio`` in whole units; a positive count stays at least 1."""
    return max(1, round(value * ratio)) if value > 0 else value


def follow_schedule_length(cfg: Config, written: Optional[Tuple[str, int]]) -> None:
    """Rescale the parameter schedulers to a schedule length set after they were written.

    A config writes its schedulers for its own ``train_cfg.max_epochs`` (or ``max_iters``),
    usually through a variable that ``--cfg-options train_cfg.max_epochs=N`` does not
    change: the learning rate would still decay over the written length. This scales
    the :data:`SCHEDULE_KEYS` of the schedulers counted in the loop's unit (``by_epoch``
    for ``max_epochs``, ``by_epoch=False`` for ``max_iters``) by ``N / written``, rounded
    to whole units, and logs the change. Schedulers in the other unit (a warm-up of a
    number of iterations in an epoch-based schedule) are left as they are.

    Args:
        cfg: The config, with the new length merged in.
        written: :func:`schedule_length` of the config as read from its file.
    """
    length = schedule_length(cfg)
    schedulers = cfg.get('param_scheduler') or []
    if written is None or length is None or length[0] != written[0] or length == written:
        return
    key, value = length
    ratio = value / written[1]
    changes = []
    for scheduler in [schedulers] if isinstance(schedulers, dict) else schedulers:
        if scheduler.get('by_epoch', True) != (key == 'max_epochs'):
            continue
        before = {k: scheduler[k] for k in SCHEDULE_KEYS if scheduler.get(k) is not None}
        for name, setting in before.items():
            scheduler[name] = [_scaled(v, ratio) for v in setting] \
                if isinstance(setting, (list, tuple)) else _scaled(setting, ratio)
        if 'end' in before:
            scheduler['end'] = max(scheduler['end'], scheduler.get('begin', 0) + 1)
        changes += [f"{scheduler.get('type')}.{name} {setting} -> {scheduler[name]}"
                    for name, setting in before.items() if scheduler[name] != setting]
    if changes:
        unit = 'epochs' if key == 'max_epochs' else 'iterations'
        print_log(f'train_cfg.{key} is {value} instead of the config\'s {written[1]}: the '
                  f'param_scheduler settings in {unit} are scaled by {value}/{written[1]} '
                  f'({", ".join(changes)})', logger='current')


def check_config_file(path: str) -> None:
    """Raise a clear error for a config path that does not exist or is not Python."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    if not path.endswith('.py'):
        raise ValueError(f'config file {path!r} must be a .py file')


def set_default_work_dir(cfg: Config, config_path: str, work_dir: Optional[str]) -> None:
    """``--work-dir`` first, then the config's, else ``work_dirs/<config name>``
    (:func:`~mutualnet_mm.evaluation.locations.run_work_dir`)."""
    cfg.work_dir = run_work_dir(cfg, config_path, work_dir)


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on a machine without a GPU (gloo backend).

    mmengine's ``init_dist`` selects the local rank's CUDA device and its default DDP
    wrapper is given ``device_ids``, both of which fail without CUDA. Without CUDA, this
    sets up the process group from torchrun's environment with gloo, and wraps the model
    without device ids (mmengine's defaults otherwise: no buffer broadcast,
    ``find_unused_parameters`` from the config). With CUDA it does nothing.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
        kwargs = {} if timeout is None else dict(timeout=datetime.timedelta(seconds=timeout))
        dist.init_process_group('gloo', **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = MODEL_WRAPPERS.get(wrapper.get('type', 'MMDistributedDataParallel'))
    if wrapper_type is not None and issubclass(wrapper_type, DistributedDataParallel):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def stop_loader_workers(runner) -> None:
    """Stop every dataloader worker of ``runner``'s loops now, before ``del runner``.

    Left to the garbage collection that frees the runner, an iterator's shutdown may run
    after its index queue was finalized in the same collection: the stop sentinel is
    never sent, and each worker is waited for twice ``MP_STATUS_CHECK_INTERVAL`` (5 s)
    before it is terminated. Persistent iterators (kept by their loader) and mmengine's
    infinite iterators are stopped here, while their queues work.
    """
    for name in ('_train_loop', '_val_loop', '_test_loop'):
        loop = getattr(runner, name, None)
        for value in vars(loop).values() if hasattr(loop, '__dict__') else ():
            if isinstance(value, DataLoader):
                iterator, value._iterator = getattr(value, '_iterator', None), None
            else:  # mmengine's _InfiniteDataloaderIterator
                iterator = getattr(value, '_iterator', None)
            if isinstance(iterator, _MultiProcessingDataLoaderIter):
                iterator._shutdown_workers()


def leave_distributed() -> None:
    """Free the process group, and so its worker threads, before the interpreter exits.

    Call it once the runner is gone (``del runner``). Two failures it prevents, both
    seen in this repository's 2-process CPU tests: a gloo worker thread that releases a
    finished collective (its tensors need the GIL) after Python has begun to finalize is
    aborted ("terminate called without an active exception"); and a group whose last
    reference is dropped from C++ with the GIL held (DDP's reducer, when the model is
    freed after ``destroy_process_group``) joins its threads while one of them waits for
    the GIL: a hang. So the model goes first (``gc.collect``, the group still
    registered), then the group, whose last reference Python drops without the GIL.
    """
    gc.collect()  # reference cycles that still hold the model, and through it the group
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    gc.collect()
