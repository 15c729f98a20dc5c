"""Train a detector or recognizer with mutual learning (mmdet's train.py arguments).

Example:
    python tools/train.py configs/maskrcnn_mutual_r50.py --work-dir work_dirs/mrcnn
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from pathlib import Path

# mmengine resolves `mmdet::` config bases through pkg_resources, which warns on import.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
# The arguments are parsed before the stack is imported (in main): --help takes no time.
TOOLS = osp.dirname(osp.abspath(__file__))
if TOOLS not in sys.path:  # run by path (runpy) rather than as a script
    sys.path.append(TOOLS)
from _arguments import add_runner_arguments


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train with mutual learning')
    parser.add_argument('config', help='train config file path')
    add_runner_arguments(parser, 'the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                             'work dir when no path is given')
    return parser.parse_args()



#: Set by tools/dist_train.sh: the file a rank stopped by SIGTERM (its checkpoint saved,
#: every rank stopped with it) creates before exiting with 0 instead of 143. torchrun
#: takes a non-zero exit for a failure: it would stop the other ranks and exit 1, hiding
#: the preemption; dist_train.sh exits 143 when the file exists.
PREEMPTED_FILE_ENV = 'MUTUALNET_PREEMPTED_FILE'


def use_safe_checkpoint_hook(cfg) -> None:
    """Replace a stock ``CheckpointHook`` by ``SafeCheckpointHook`` (same arguments)."""
    from mmengine.hooks import CheckpointHook
    stock = ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook)
    hooks = [cfg.get('default_hooks', {}).get('checkpoint'), *cfg.get('custom_hooks', [])]
    for hook in hooks:
        if isinstance(hook, dict) and hook.get('type') in stock:
            hook['type'] = 'SafeCheckpointHook'


def main() -> None:
    args = parse_args()
    from mmengine.runner import Runner

    import mutualnet_mm  # noqa: F401  (registers modules, loops and safe checkpoint loading)
    from mutualnet_mm.reliability.checkpoint_hook import PREEMPTED_EXIT_CODE
    from mutualnet_mm.reliability.data_checks import check_data_config
    from mutualnet_mm.tools_common import (
        leave_distributed,
        load_tool_config,
        stop_loader_workers,
    )

    cfg = load_tool_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise ValueError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                             f'{args.config}')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint {args.resume!r} does not exist')
        cfg.resume, cfg.load_from = True, args.resume
    if args.resume is not None:  # the same architecture and a usable meta, or a clear error
        filename = None if args.resume == 'auto' else args.resume
        cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                            dict(type='ResumeMetaCheckHook', filename=filename),
                            dict(type='CheckpointMatchHook', filename=filename)]
    use_safe_checkpoint_hook(cfg)
    check_data_config(cfg, ['train', 'val'] if cfg.get('val_cfg') else ['train'],
                      args.check_data)
    runner = Runner.from_cfg(cfg)
    exit_code = 0
    try:
        runner.train()
    except SystemExit as stop:  # SafeCheckpointHook after a SIGTERM: every rank is here
        if stop.code != PREEMPTED_EXIT_CODE:
            raise
        exit_code = stop.code
    stop_loader_workers(runner)
    del runner
    leave_distributed()
    if exit_code and os.environ.get(PREEMPTED_FILE_ENV):
        Path(os.environ[PREEMPTED_FILE_ENV]).touch()
    elif exit_code:
        raise SystemExit(exit_code)


if __name__ == '__main__':
    main()
