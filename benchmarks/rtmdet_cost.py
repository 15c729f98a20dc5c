"""Cost of the RTMDet family points: the shared RTMDet-l at each size vs. mmdet's own.

The mutual RTMDet-l recipe (``configs/rtmdet/rtmdet_l_mutual_coco.py``, random weights,
plain BN) is set to each family point (width, depth) and exported; mmdet builds its own
RTMDet-tiny/s/m/l from its configs. ``count_cost`` counts both on one 640x640 image
(``mode='tensor'``: backbone, neck and head, no box post-processing), next to the figures
mmdet publishes for its models. GFLOPs here are 10^9 multiply-adds, as in the project's
tables and in mmdet's table (mmengine's counter).

    python benchmarks/rtmdet_cost.py
"""
import argparse
import copy
import os.path as osp
import time

import torch
from common import REPO, add_threads_arg, markdown_table, print_footer, print_header
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from mutualnet_mm.deploy import build_stock_model, export_config_and_weights
from mutualnet_mm.engine import SubnetConfig
from mutualnet_mm.evaluation import count_cost
from mutualnet_mm.ops import set_width

CONFIG = osp.join(REPO, 'configs', 'rtmdet', 'rtmdet_l_mutual_coco.py')
#: size: ((width, depth), mmdet's published (params M, GFLOPs) at 640).
FAMILY = {'tiny': ((0.375, 0.167), (4.8, 8.1)), 's': ((0.5, 0.33), (8.89, 14.8)),
          'm': ((0.75, 0.67), (24.71, 39.27)), 'l': ((1.0, 1.0), (52.3, 80.23))}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=640, help='image side')
    add_threads_arg(parser)
    return parser.parse_args()


def plain_bn(value):
    """A config with plain BN for SyncBN (one process)."""
    if isinstance(value, dict):
        return {k: 'BN' if k == 'type' and v == 'SyncBN' else plain_bn(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_bn(v) for v in value)
    return value


def stock_rtmdet(size: str) -> torch.nn.Module:
    """mmdet's own RTMDet of ``size``, random weights."""
    name = f'mmdet::rtmdet/rtmdet_{size}_8xb32-300e_coco.py'
    cfg = Config.fromstring(f'_base_ = {name!r}\n', '.py')
    model_cfg = plain_bn(cfg.model.to_dict())
    model_cfg['backbone'].pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(model_cfg).eval()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('RTMDet family points: shared RTMDet-l vs. mmdet\'s own (one image)', args)
    cfg = Config.fromfile(CONFIG)
    cfg.model = plain_bn(cfg.model.to_dict())
    cfg.model['backbone'].pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(cfg.model)).eval()
    image = torch.randn(1, 3, args.size, args.size)
    rows = []
    for size, ((width, depth), (params, gflops)) in FAMILY.items():
        config = SubnetConfig(width, 1.0, depth=depth)
        stock_cfg, state_dict = export_config_and_weights(model, cfg, config)
        exported = build_stock_model(stock_cfg, state_dict)
        set_width(model, width, None, depth)
        costs = {}
        with torch.no_grad():
            for side, net in (('shared', model), ('exported', exported),
                              ('mmdet', stock_rtmdet(size))):
                costs[side] = count_cost(net, lambda net=net: net(image, mode='tensor'))
        rows.append({'size': size, 'width': width, 'depth': depth,
                     'gflops_shared': costs['shared']['total']['gmacs'],
                     'gflops_exported': costs['exported']['total']['gmacs'],
                     'gflops_mmdet': costs['mmdet']['total']['gmacs'],
                     'gflops_published': gflops,
                     'mparams_exported': costs['exported']['total']['mparams'],
                     'mparams_mmdet': costs['mmdet']['total']['mparams'],
                     'mparams_published': params})
    print(markdown_table(rows))
    print_footer(started)


if __name__ == '__main__':
    main()
