"""Calibrate BN statistics for every configuration of query tables, for AdaptiveInferencer.

Example:
    python tools/calibrate_bn_stats.py configs/maskrcnn_mutual_r50.py \
        work_dirs/m/epoch_12.pth --out work_dirs/m/bn_stats.pth
    # the query tables are those `python tools/test.py CONFIG CHECKPOINT` wrote
    # (work_dirs/maskrcnn_mutual_r50/), or --query-table PATH [PATH]
    # then: AdaptiveInferencer(config, checkpoint, query_table, bn_stats='.../bn_stats.pth')
"""
import argparse
import warnings

# mmengine resolves `mmdet::` config bases through pkg_resources, which warns on import.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
# The arguments are parsed before the stack is imported (in main): --help takes no time.
from mmengine.config import DictAction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Per-configuration BN statistics')
    parser.add_argument('config', help='config of the adaptive model')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('--query-table', nargs='+',
                        help='query table(s): every configuration in them is calibrated '
                             '(default: query_table.json, and query_table_latency_ms.json '
                             'if there is one, where tools/test.py CONFIG CHECKPOINT writes '
                             'them: the work dir, then next to the checkpoint)')
    parser.add_argument('--work-dir',
                        help='the work dir of the tools/test.py run to take the query '
                             'tables from (default: the config\'s, else '
                             'work_dirs/<config name>)')
    parser.add_argument('--out', required=True, help='output file (e.g. bn_stats.pth)')
    parser.add_argument('--calibration-batches', type=int, default=8,
                        help='training batches per configuration')
    parser.add_argument('--device', default='cpu', help='device to calibrate on')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the calibration draw (a fixed draw without random '
                             'augmentation)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from mmengine.config import Config
    from mmengine.runner import set_random_seed

    import mutualnet_mm  # noqa: F401
    from mutualnet_mm.deploy import (
        build_adaptive_model,
        calibrate_bn_stats,
        calibration_loader,
        save_bn_stats,
    )
    from mutualnet_mm.deploy.adaptive import task_rescaler
    from mutualnet_mm.engine.subnet import SubnetConfig
    from mutualnet_mm.evaluation import QueryTable
    from mutualnet_mm.evaluation.locations import find_query_tables
    from mutualnet_mm.reliability.fingerprint import weights_fingerprint
    from mutualnet_mm.tasks import task_of
    from mutualnet_mm.tools_common import check_config_file

    check_config_file(args.config)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    set_random_seed(args.seed)
    model = build_adaptive_model(cfg, args.checkpoint, args.device)
    fingerprint = weights_fingerprint(model)
    tables = [QueryTable.load(path, fingerprint, f'checkpoint {args.checkpoint!r}')
              for path in args.query_table] if args.query_table else \
        find_query_tables(cfg, args.config, args.checkpoint, fingerprint, args.work_dir)
    configs = list(dict.fromkeys(SubnetConfig.from_record(e)
                                 for table in tables for e in table.entries))
    loader = calibration_loader(cfg, args.seed, task_of(model))
    stats = calibrate_bn_stats(model, loader, configs, task_rescaler(model, cfg),
                               args.calibration_batches)
    save_bn_stats(args.out, stats, fingerprint)
    print(f'BN statistics of {len(stats)} configurations '
          f'({", ".join(c.name for c in stats)}) written to {args.out}')


if __name__ == '__main__':
    main()
