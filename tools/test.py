"""Evaluate a checkpoint at every (width, scale) of the config's grid.

Writes per_config.json/.csv/.png and query_table.json in the work dir. mmdet's and
mmaction2's own tools/test.py run the same configs.

Example:
    python tools/test.py configs/maskrcnn_mutual_r50.py work_dirs/mrcnn/epoch_12.pth
"""
import argparse
import copy
import os
import os.path as osp
import sys
import warnings

# mmengine resolves `mmdet::` config bases through pkg_resources, which warns on import.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
# The arguments are parsed before the stack is imported (in main): --help takes no time.
TOOLS = osp.dirname(osp.abspath(__file__))
if TOOLS not in sys.path:  # run by path (runpy) rather than as a script
    sys.path.append(TOOLS)
from _arguments import add_runner_arguments
from mmengine.config import Config, ConfigDict


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Per-configuration evaluation')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_runner_arguments(parser, 'the dir to save the results and logs')
    parser.add_argument('--widths', type=float, nargs='+', help='override the grid widths')
    parser.add_argument('--scales', type=float, nargs='+', help='override the grid scales')
    parser.add_argument('--head-widths', type=float, nargs='+',
                        help='override the grid head widths (neck and heads, for models '
                             'trained with decoupled widths)')
    parser.add_argument('--depths', type=float, nargs='+',
                        help='override the grid depths (models with a depth: RTMDet)')
    parser.add_argument('--out', '--dump', dest='out',
                        help='dump predictions to pickle files for offline evaluation, one per '
                             'configuration: OUT.pkl -> OUT_<configuration>.pkl (mmdet: '
                             '--out, mmaction2: --dump)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir',
                        help='draw the predictions and the ground truth into '
                             'SHOW_DIR/<configuration>/, a relative SHOW_DIR being below '
                             'work_dir/<timestamp>/ (as mmdet does)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--interval', type=int, default=1,
                        help='video: visualize every INTERVAL-th sample')
    parser.add_argument('--tta', action='store_true',
                        help='detection: test-time augmentation (the config\'s tta_model and '
                             'tta_pipeline, else horizontal flip), at every configuration')
    return parser.parse_args()


def enable_visualization(cfg: Config, args: argparse.Namespace, video: bool) -> None:
    """Turn on the task's visualization hook as mmdet's / mmaction2's test.py do.

    A video config without one (mmaction2's recognizer configs have none) gets a
    :class:`~mutualnet_mm.engine.visualization.ClipVisualizationHook`; mmaction2's own
    hook in a config is replaced by it (it cannot draw clips of several views).
    """
    hook = cfg.default_hooks.get('visualization')
    if video and (hook is None or str(hook.type).rpartition('.')[2] == 'VisualizationHook'):
        hook = cfg.default_hooks.visualization = ConfigDict(
            {**(hook or {}), 'type': 'ClipVisualizationHook'})
    if hook is None:
        raise ValueError(f'--show/--show-dir need default_hooks.visualization in '
                         f'{args.config} (mmdet: dict(type="DetVisualizationHook"))')
    hook.update(show=args.show, wait_time=args.wait_time)
    if video:
        hook.update(enable=True, out_dir=args.show_dir, interval=args.interval)
    else:
        hook.update(draw=True, test_out_dir=args.show_dir)


def enable_tta(cfg: Config) -> None:
    """Wrap the model in its test-time augmentation model (mmdet's default: flip)."""
    if (cfg.model.get('roi_head') or {}).get('mask_head') is not None:
        raise ValueError('--tta: mmdet\'s DetTTAModel merges boxes only; test-time '
                         'augmentation of instance segmentation (this config\'s '
                         'roi_head.mask_head) is not supported')
    cfg.setdefault('tta_model', dict(type='DetTTAModel', tta_cfg=dict(
        nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
    if 'tta_pipeline' not in cfg:
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        pack = dict(dataset.pipeline[-1])
        pack['meta_keys'] = tuple(dict.fromkeys([*pack.get('meta_keys', (
            'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')), 'flip',
            'flip_direction']))
        cfg.tta_pipeline = [*copy.deepcopy(dataset.pipeline[:-1]), dict(
            type='TestTimeAug', transforms=[[dict(type='RandomFlip', prob=1.0),
                                             dict(type='RandomFlip', prob=0.0)], [pack]])]
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main() -> None:
    args = parse_args()
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    from mmdet.evaluation import DumpDetResults
    from mmengine.evaluator import DumpResults
    from mmengine.runner import Runner

    import mutualnet_mm  # noqa: F401
    from mutualnet_mm.reliability.data_checks import check_data_config
    from mutualnet_mm.tools_common import (
        leave_distributed,
        load_tool_config,
        stop_loader_workers,
    )

    cfg = load_tool_config(args)
    if args.widths:
        cfg.test_cfg.widths = tuple(args.widths)
    if args.scales:
        cfg.test_cfg.scales = tuple(args.scales)
    if args.head_widths:
        cfg.test_cfg.head_widths = tuple(args.head_widths)
    if args.depths:
        cfg.test_cfg.depths = tuple(args.depths)
    cfg.load_from = args.checkpoint
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        dict(type='CheckpointMatchHook', filename=args.checkpoint)]
    calibrates = (cfg.test_cfg.get('calibration') or {}).get('num_batches', 8) != 0
    check_data_config(cfg, ['test', 'train'] if calibrates else ['test'],  # BN calibration
                      args.check_data, training=False)
    video = cfg.get('default_scope') == 'mmaction'
    if args.show or args.show_dir:
        enable_visualization(cfg, args, video)
    if args.tta:
        if video:
            raise ValueError('--tta is for detection configs (mmaction2 has no test-time '
                             f'augmentation model); {args.config} is an mmaction2 config')
        enable_tta(cfg)
    runner = Runner.from_cfg(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out {args.out!r} must be a .pkl or .pickle file')
        dump = DumpResults if video else DumpDetResults
        runner.test_evaluator.metrics.append(dump(out_file_path=args.out))
    runner.test()
    stop_loader_workers(runner)
    del runner
    leave_distributed()


if __name__ == '__main__':
    main()
