"""Adaptive vs. native feature extractor (backbone + neck) at the sizes users run.

For each model and width, the slimmable detector set to that width (adaptive) and the
stock mmdet detector built at that width with the sliced weights (native: its own
classes, its own config) run ``extract_feat`` on the same batch-1 input, in eval mode
without gradients. All cases take turns in every round; each timed sample is ``--calls``
consecutive calls (a deployed model runs many frames at one configuration; the cost of
switching is measured by ``benchmarks/switch_cost.py``). The default models:

- ``configs/maskrcnn_mutual_r50.py`` (ResNet-50-FPN, the whole detector slims) at
  800x1216, the size of a COCO image after the stock test resize;
- ``configs/maskrcnn_mutual_mbv2.py`` (MobileNetV2-FPN) at 320x320.

Goal (issue 17): adaptive / native <= 1.05 at widths 1.0, 0.75, 0.5, 0.25 (a width
below a model's range runs at its minimum: MobileNetV2's configs stop at 0.35).

    python benchmarks/feature_extractor.py                 # CPU
    python benchmarks/feature_extractor.py --device cuda   # GPU (times with synchronize)
"""
import argparse
import os.path as osp
import time
from typing import Dict, List

import torch
from common import (
    REPO,
    Case,
    add_device_arg,
    add_grid_args,
    add_threads_arg,
    device_clock,
    markdown_table,
    median,
    print_device,
    print_footer,
    print_header,
    spread,
    time_interleaved,
)
from mmengine.config import Config

from mutualnet_mm.deploy import build_adaptive_model, build_stock_model, export_config_and_weights
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.ops import set_width, width_range_of

GOAL = 1.05
MODELS = {
    'r50-fpn': ('configs/maskrcnn_mutual_r50.py', (800, 1216)),
    'mbv2-fpn': ('configs/maskrcnn_mutual_mbv2.py', (320, 320)),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    add_grid_args(parser, scales=False)
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--calls', type=int, default=3,
                        help='consecutive calls per timed sample (default: 3)')
    add_device_arg(parser)
    add_threads_arg(parser)
    return parser.parse_args()


def timed_features(model: torch.nn.Module, inputs: torch.Tensor, calls: int):
    """A case body: ``calls`` feature extractions."""
    def run() -> None:
        with torch.no_grad():
            for _ in range(calls):
                model.extract_feat(inputs)
    return run


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Feature extractor: adaptive vs. native (batch 1, eval, no gradients)', args)
    print_device(args.device)
    rows: List[Dict[str, object]] = []
    for name in args.models:
        config_path, (height, width_px) = MODELS[name]
        cfg = Config.fromfile(osp.join(REPO, config_path))
        cfg.model.backbone.pop('init_cfg', None)  # random weights: nothing to download
        adaptive = build_adaptive_model(cfg, device=args.device)
        inputs = torch.randn(1, 3, height, width_px, device=args.device,
                             generator=torch.Generator(args.device).manual_seed(0))
        low, high = width_range_of(adaptive)  # MobileNetV2's configs stop at 0.35
        widths = sorted({min(max(w, low), high) for w in args.widths}, reverse=True)
        cases, natives = [], {}
        for width in widths:
            stock_cfg, state_dict = export_config_and_weights(
                adaptive, cfg, SubnetConfig(width, 1.0))
            natives[width] = build_stock_model(stock_cfg, state_dict).to(args.device)
            cases += [
                Case(f'{name} w{width} adaptive', timed_features(adaptive, inputs, args.calls),
                     setup=lambda model=adaptive, width=width: set_width(model, width)),
                Case(f'{name} w{width} native',
                     timed_features(natives[width], inputs, args.calls))]
        times = time_interleaved(cases, args.repeats, args.warmup, device_clock(args.device),
                                 block=2)
        for width in widths:
            a, n = (times[f'{name} w{width} {side}'] for side in ('adaptive', 'native'))
            ms_a, ms_n = median(a) * 1000 / args.calls, median(n) * 1000 / args.calls
            set_width(adaptive, width)
            with torch.no_grad():  # the same network: the outputs must agree
                difference = max((x - y).abs().max().item() for x, y in zip(
                    adaptive.extract_feat(inputs), natives[width].extract_feat(inputs)))
            rows.append(dict(model=name, input=f'{height}x{width_px}', width=width,
                             adaptive_ms=ms_a, native_ms=ms_n, ratio=ms_a / ms_n,
                             quartiles=f'{spread(a)}; {spread(n)}',
                             max_output_difference=difference))
        set_width(adaptive, 1.0)
        del adaptive, natives
    print(f'\nmedian ms per extract_feat call ({args.repeats} rounds of {args.calls} calls, '
          f'{args.warmup} warm-up round; quartiles adaptive; native):')
    print(markdown_table(rows))
    worst = max(row['ratio'] for row in rows)
    over = sum(row['ratio'] > GOAL for row in rows)
    print(f'\nadaptive / native: worst {worst:.3f}, median '
          f'{median([r["ratio"] for r in rows]):.3f}; goal <= {GOAL}: '
          f'{"met" if worst <= GOAL else "missed"} ({over} of {len(rows)} over)')
    print_footer(started)


if __name__ == '__main__':
    main()
