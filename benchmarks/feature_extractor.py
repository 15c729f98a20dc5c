"""Adaptive vs. native detector at the sizes users run: feature extractor and ``predict``.

For each model and width, the slimmable detector set to that width (adaptive) and the
stock mmdet detector built at that width with the sliced weights (native: its own
classes, its own config) run ``extract_feat`` (backbone + neck) on the same batch-1
input, in eval mode without gradients, and then the whole ``predict`` (RPN, box and mask
heads, masks pasted at the input size). The box head's score threshold is set to 0 in
both, so each keeps its ``max_per_img`` (100) detections and the mask head runs on all of
them, as on a real image. All cases take turns in every round; each timed feature sample
is ``--calls`` consecutive calls, each predict sample one call (a deployed model runs
many frames at one configuration; the cost of switching is measured by
``benchmarks/switch_cost.py``). The default models:

- ``configs/maskrcnn_mutual_r50.py`` (ResNet-50-FPN, the whole detector slims) at
  800x1216, the size of a COCO image after the stock test resize;
- ``configs/maskrcnn_mutual_mbv2.py`` (MobileNetV2-FPN) at 320x320.

Widths 1.0, 0.75, 0.5, 0.25 by default (a width below a model's range runs at its
minimum: MobileNetV2's configs stop at 0.35). Ratios adaptive / native are medians of
per-round ratios; ``--target-features`` / ``--target-predict`` also print whether the
worst width is within a given ratio.

    python benchmarks/feature_extractor.py                 # CPU
    python benchmarks/feature_extractor.py --device cuda   # GPU (times with synchronize;
                                                           # predict needs mmcv's CUDA ops)
    python benchmarks/feature_extractor.py --no-predict    # the features only
"""
import argparse
import os.path as osp
import time
from typing import Dict, List, Sequence

import torch
from common import (
    REPO,
    Case,
    add_device_arg,
    add_grid_args,
    add_target_arg,
    add_threads_arg,
    device_clock,
    keep_every_detection,
    markdown_table,
    median,
    paired_ratio,
    print_device,
    print_footer,
    print_header,
    spread,
    target_note,
    time_interleaved,
)
from mmdet.structures import DetDataSample
from mmengine.config import Config

from mutualnet_mm.deploy import build_adaptive_model, build_stock_model, export_config_and_weights
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.ops import set_width, width_range_of

MODELS = {
    'r50-fpn': ('configs/maskrcnn_mutual_r50.py', (800, 1216)),
    'mbv2-fpn': ('configs/maskrcnn_mutual_mbv2.py', (320, 320)),
}
SIDES = ('adaptive', 'native')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    add_grid_args(parser, scales=False)
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--calls', type=int, default=3,
                        help='consecutive extract_feat calls per timed sample (default: 3)')
    parser.add_argument('--predict', action=argparse.BooleanOptionalAction, default=True,
                        help='also time the whole predict (default: on)')
    add_device_arg(parser)
    add_threads_arg(parser)
    add_target_arg(parser, '--target-features', 'adaptive / native in extract_feat')
    add_target_arg(parser, '--target-predict', 'adaptive / native in predict')
    return parser.parse_args()


def image_samples(height: int, width: int) -> List[DetDataSample]:
    """The data sample of one unpadded ``height`` x ``width`` image at its own size."""
    shape = (height, width)
    return [DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                        batch_input_shape=shape, scale_factor=(1.0, 1.0)))]


def timed(run, calls: int):
    """A case body: ``calls`` calls of ``run`` without gradients."""
    def body() -> None:
        with torch.no_grad():
            for _ in range(calls):
                run()
    return body


def width_cases(prefix: str, models: Dict[str, torch.nn.Module], width: float,
                inputs: torch.Tensor, samples: List[DetDataSample], parts: Sequence[str],
                calls: int) -> List[Case]:
    """The timed cases of one width: per part, the adaptive and the native side."""
    cases = []
    for part in parts:
        for side, model in models.items():
            if part == 'features':
                run = timed(lambda model=model: model.extract_feat(inputs), calls)
            else:
                run = timed(lambda model=model: model(inputs, samples, mode='predict'), 1)
            setup = (lambda model=model: set_width(model, width)) \
                if side == 'adaptive' else None
            cases.append(Case(f'{prefix} {part} {side}', run, setup=setup))
    return cases


def largest_difference(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b))


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Adaptive vs. native detector (batch 1, eval, no gradients)', args)
    print_device(args.device)
    parts = ('features', 'predict') if args.predict else ('features',)
    rows: List[Dict[str, object]] = []
    for name in args.models:
        config_path, (height, width_px) = MODELS[name]
        cfg = Config.fromfile(osp.join(REPO, config_path))
        cfg.model.backbone.pop('init_cfg', None)  # random weights: nothing to download
        keep_every_detection(cfg)
        adaptive = build_adaptive_model(cfg, device=args.device)
        inputs = torch.randn(1, 3, height, width_px, device=args.device,
                             generator=torch.Generator(args.device).manual_seed(0))
        samples = image_samples(height, width_px)
        low, high = width_range_of(adaptive)  # MobileNetV2's configs stop at 0.35
        widths = sorted({min(max(w, low), high) for w in args.widths}, reverse=True)
        cases, models = [], {}
        for width in widths:
            stock_cfg, state_dict = export_config_and_weights(
                adaptive, cfg, SubnetConfig(width, 1.0))
            models[width] = {'adaptive': adaptive,
                             'native': build_stock_model(stock_cfg, state_dict).to(args.device)}
            cases += width_cases(f'{name} w{width}', models[width], width, inputs, samples,
                                 parts, args.calls)
        times = time_interleaved(cases, args.repeats, args.warmup, device_clock(args.device),
                                 block=len(SIDES))
        for width in widths:
            set_width(adaptive, width)
            row: Dict[str, object] = dict(model=name, input=f'{height}x{width_px}', width=width)
            for part in parts:
                a, n = (times[f'{name} w{width} {part} {side}'] for side in SIDES)
                calls = args.calls if part == 'features' else 1
                row.update({f'{part}_adaptive_ms': median(a) * 1000 / calls,
                            f'{part}_native_ms': median(n) * 1000 / calls,
                            f'{part}_ratio': paired_ratio(a, n),
                            f'{part}_quartiles': f'{spread(a)}; {spread(n)}'})
            with torch.no_grad():  # the same network: the outputs must agree
                native = models[width]['native']
                row['features_difference'] = largest_difference(
                    adaptive.extract_feat(inputs), native.extract_feat(inputs))
                if args.predict:
                    ours, theirs = (model(inputs, samples, mode='predict')[0].pred_instances
                                    for model in (adaptive, native))
                    row['detections'] = f'{len(ours)}/{len(theirs)}'
                    row['predict_difference'] = largest_difference(
                        (ours.bboxes, ours.scores, ours.masks),
                        (theirs.bboxes, theirs.scores, theirs.masks))
            rows.append(row)
        set_width(adaptive, 1.0)
        del adaptive, models
    print(f'\nmedian ms per call ({args.repeats} rounds, {args.warmup} warm-up round; a '
          f'features sample is {args.calls} calls, a predict sample one); ratios: medians of '
          'the per-round ratios; quartiles adaptive; native; differences: the largest '
          'between the two networks\' outputs (features; boxes, scores and masks); '
          'detections adaptive/native:')
    print(markdown_table(rows))
    targets = {'features': args.target_features, 'predict': args.target_predict}
    for part in parts:
        ratios = [row[f'{part}_ratio'] for row in rows]
        print(f'{part} adaptive / native: worst {max(ratios):.3f}, median '
              f'{median(ratios):.3f}' + target_note(ratios, targets[part]))
    print_footer(started)


if __name__ == '__main__':
    main()
