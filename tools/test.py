"""Evaluate a checkpoint at every (width, scale) of the config's grid.

Writes per_config.json/.csv/.png and query_table.json in the work dir. mmdet's and
mmaction2's own tools/test.py run the same configs.

Example:
    python tools/test.py configs/maskrcnn_mutual_r50.py work_dirs/mrcnn/epoch_12.pth
"""
import argparse
import os
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from mmengine.runner import Runner

import mutualnet_mm  # noqa: F401
from mutualnet_mm.datasets.checks import check_data_config
from mutualnet_mm.tools_common import add_runner_arguments, load_tool_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Per-configuration evaluation')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_runner_arguments(parser, 'the dir to save the results and logs')
    parser.add_argument('--widths', type=float, nargs='+', help='override the grid widths')
    parser.add_argument('--scales', type=float, nargs='+', help='override the grid scales')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = load_tool_config(args)
    if args.widths:
        cfg.test_cfg.widths = tuple(args.widths)
    if args.scales:
        cfg.test_cfg.scales = tuple(args.scales)
    cfg.load_from = args.checkpoint
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        dict(type='CheckpointMatchHook', filename=args.checkpoint)]
    calibrates = (cfg.test_cfg.get('calibration') or {}).get('num_batches', 8) != 0
    check_data_config(cfg, ['test', 'train'] if calibrates else ['test'],  # BN calibration
                      args.check_data, training=False)
    Runner.from_cfg(cfg).test()


if __name__ == '__main__':
    main()
