"""Export one (width, scale) configuration of an adaptive model as a stock OpenMMLab model.

Writes OUT/config.py (a standalone mmdet / mmaction2 config: stock types, the channel
counts of the configuration, the test pipeline at its scale) and OUT/model.pth (the
sliced weights, BN statistics calibrated for the configuration); with --onnx also
OUT/backbone_neck.onnx. Stock mmdet / mmaction2 run them without mutualnet_mm. OUT is
written whole: staged next to it, then put in place of an earlier export in one step.

Examples:
    python tools/export_subnet.py configs/maskrcnn_mutual_r50.py work_dirs/m/epoch_12.pth \
        --width 0.5 --scale 0.75 --out exported/w0.5_s0.75
    # the best configuration within 40 GFLOPs, from the query table that
    # `python tools/test.py CONFIG CHECKPOINT` wrote to work_dirs/maskrcnn_mutual_r50/
    python tools/export_subnet.py configs/maskrcnn_mutual_r50.py work_dirs/m/epoch_12.pth \
        --budget 40 --out exported/40gflops
"""
import argparse
import math
import os.path as osp
import warnings

# mmengine resolves `mmdet::` config bases through pkg_resources, which warns on import.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
# The arguments are parsed before the stack is imported (in main): --help takes no time.
from mmengine.config import Config, DictAction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export a configuration as a stock model')
    parser.add_argument('config', help='config of the adaptive model')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--width', type=float, help='width multiplier to export')
    parser.add_argument('--scale', type=float, default=1.0,
                        help='input scale to export (with --width; default 1.0)')
    parser.add_argument('--frames', type=int, help='frames per clip (video; with --width)')
    parser.add_argument('--head-width', type=float,
                        help='width of the neck and heads (with --width, for a model '
                             'evaluated with decoupled widths; default: --width)')
    parser.add_argument('--depth', type=float,
                        help='depth of the depth-elastic parts (with --width; RTMDet\'s '
                             'CSPNeXt: 0.167 tiny, 0.33 s, 0.67 m, 1 l of an RTMDet-l)')
    parser.add_argument('--budget', type=float,
                        help='export the most accurate configuration within this budget')
    parser.add_argument('--budget-unit', choices=['gflops', 'ms'], default='gflops',
                        help='unit of --budget: GFLOPs or measured latency in ms')
    parser.add_argument('--query-table',
                        help='query table of an evaluation run (default: query_table.json, '
                             'or query_table_latency_ms.json for ms, where tools/test.py '
                             'CONFIG CHECKPOINT writes it: the work dir, then next to the '
                             'checkpoint, where a training validates)')
    parser.add_argument('--work-dir',
                        help='the work dir of the tools/test.py run to take the query '
                             'table from (default: the config\'s, else '
                             'work_dirs/<config name>)')
    parser.add_argument('--calibration-batches', type=int, default=8,
                        help='training batches to calibrate BN statistics with')
    parser.add_argument('--onnx', action='store_true',
                        help='also write backbone_neck.onnx and check it with onnxruntime')
    parser.add_argument('--onnx-shape', type=int, nargs='+',
                        help='input shape traced for ONNX (default: 1 x 3 x the test '
                             'pipeline\'s resize scale, padded)')
    parser.add_argument('--device', default='cpu', help='device to calibrate on')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the calibration draw (a fixed draw without random '
                             'augmentation)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args()


def default_onnx_shape(stock_cfg: Config) -> list:
    """``(1, 3, H, W)``: the test pipeline's resize scale, padded as the model pads."""
    from mmdet.utils import get_test_pipeline_cfg
    resize = [t for t in get_test_pipeline_cfg(stock_cfg)
              if str(t['type']).endswith('Resize') and t.get('scale') is not None]
    if not resize or not isinstance(resize[0]['scale'], (list, tuple)) or \
            min(resize[0]['scale']) <= 0:
        raise ValueError('cannot derive the ONNX input shape from the test pipeline; '
                         'pass --onnx-shape, e.g. --onnx-shape 1 3 800 1344')
    width, height = resize[0]['scale']
    divisor = stock_cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1) or 1
    return [1, 3, math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor]


def main() -> None:
    args = parse_args()
    import torch
    from mmengine.runner import set_random_seed

    import mutualnet_mm  # noqa: F401
    from mutualnet_mm.deploy import (
        build_adaptive_model,
        build_stock_model,
        calibration_loader,
        export_backbone_neck_onnx,
        export_subnet,
        load_adaptive_weights,
        resolve_config,
    )
    from mutualnet_mm.deploy.onnx_export import onnx_difference
    from mutualnet_mm.evaluation.locations import find_query_table
    from mutualnet_mm.evaluation.results import budget_cost
    from mutualnet_mm.reliability.checkpoint import load_checkpoint_safely
    from mutualnet_mm.reliability.fingerprint import weights_fingerprint
    from mutualnet_mm.tasks import task_of
    from mutualnet_mm.tools_common import check_config_file

    check_config_file(args.config)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.budget is not None and any(
            value is not None for value in (args.width, args.frames, args.head_width,
                                            args.depth)):
        raise ValueError('--budget picks the configuration: drop '
                         '--width/--head-width/--depth/--scale/--frames')
    set_random_seed(args.seed)
    model = build_adaptive_model(cfg, device=args.device)
    meta = load_adaptive_weights(model, args.checkpoint)
    fingerprint = weights_fingerprint(model)
    table = args.query_table
    if args.budget is not None and table is None:
        table = find_query_table(cfg, args.config, args.checkpoint,
                                 budget_cost(args.budget_unit), fingerprint, args.work_dir)
    config, entry = resolve_config(
        width=args.width, scale=args.scale, frames=args.frames, budget=args.budget,
        head_width=args.head_width, depth=args.depth, budget_unit=args.budget_unit,
        query_table=table,
        checkpoint=fingerprint, checkpoint_name=f'checkpoint {args.checkpoint!r}')
    if entry is not None:
        print(f'budget {args.budget:g} {args.budget_unit}: {config.name} ({entry})')
    extra = {'dataset_meta': meta['dataset_meta']} if 'dataset_meta' in meta else {}

    def add_onnx(paths: dict) -> dict:
        """Write backbone_neck.onnx beside the staged files; check it with onnxruntime."""
        stock_cfg = Config.fromfile(paths['config'])
        shape = args.onnx_shape or default_onnx_shape(stock_cfg)
        state_dict = load_checkpoint_safely(paths['checkpoint'])['state_dict']
        stock = build_stock_model(stock_cfg, state_dict)
        onnx = export_backbone_neck_onnx(
            stock, shape, osp.join(osp.dirname(paths['config']), 'backbone_neck.onnx'))
        difference = onnx_difference(onnx, stock, torch.randn(*shape))
        print(f'ONNX at {shape}: onnxruntime vs PyTorch max |difference| {difference:.2e}')
        return {'onnx': onnx}

    loader = calibration_loader(cfg, args.seed, task_of(model))
    paths = export_subnet(model, cfg, config, args.out, loader, args.calibration_batches,
                          meta=extra, extend=add_onnx if args.onnx else None)
    print(f'exported {config.name}: ' + ', '.join(paths.values()))


if __name__ == '__main__':
    main()
