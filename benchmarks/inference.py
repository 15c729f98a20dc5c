"""Inference latency: adaptive network vs. exported and native stock networks; FLOPs vs. latency.

For each configuration (width x scale) three models run ``predict`` on the same
preprocessed image (batch 1), already rescaled to the configuration (outside the timed
region; the adaptive network's width is restored before timing, from a ``WidthSnapshot``
as ``AdaptiveInferencer`` does):

- adaptive: the slimmable detector at that width;
- exported: ``export_config_and_weights`` + ``build_stock_model`` (stock mmdet, its sliced
  weights);
- native: a fresh stock detector built from the same stock config, loaded with the same
  weights (``load_state_dict``): the box post-processing (NMS, mask pasting) does work
  that depends on the weights, so a network with other weights is not the same work.

Each ratio (adaptive / native, exported / native, for ``predict`` and for
``extract_feat``) is the median over rounds of the two sides' times in the same round
(``paired_ratio``); ``--target-predict`` / ``--target-features`` / ``--target-exported``
also print whether the worst configuration is within a given ratio. The RoI heads' work
depends on how many boxes pass the score threshold, which depends on the weights:
``test_cfg.rcnn.score_thr`` is set to 0 so every model keeps ``max_per_img`` detections
(the table shows the counts of proposals, at most the RPN's ``max_per_img``, and of
detections). Then the GFLOPs of each configuration (``count_cost``) are compared with
its measured latencies: Spearman's rank correlation over the grid, and the pairs whose
GFLOPs order and latency order disagree.

    python benchmarks/inference.py                 # demo Mask R-CNN, 128 px
    python benchmarks/inference.py --calls 10 --repeats 60   # the recorded run, 11 min
    python benchmarks/inference.py --device cuda   # on a GPU (mmcv with CUDA ops)
"""
import argparse
import itertools
import time
from functools import partial
from typing import Dict, List

import torch
from common import (
    Case,
    add_device_arg,
    add_grid_args,
    add_model_args,
    add_target_arg,
    build_model,
    config_on_generated_data,
    describe,
    device_clock,
    first_batch,
    generated_data,
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
from scipy.stats import spearmanr

from mutualnet_mm.deploy import build_stock_model, export_config_and_weights, load_adaptive_weights
from mutualnet_mm.engine.rescale import DetBatchRescaler
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.evaluation import count_cost
from mutualnet_mm.ops import WidthSnapshot, set_width

SIDES = ('adaptive', 'exported', 'native')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_args(parser, size=128, batch_size=1, repeats=30)
    add_grid_args(parser)
    add_device_arg(parser)
    parser.add_argument('--checkpoint', help='adaptive weights (default: random)')
    parser.add_argument('--calls', type=int, default=3,
                        help='consecutive calls per timed sample: a deployed model runs many '
                             'frames at one configuration (default: 3)')
    add_target_arg(parser, '--target-predict', 'adaptive / native in predict')
    add_target_arg(parser, '--target-features', 'adaptive / native in extract_feat')
    add_target_arg(parser, '--target-exported', 'exported / native in predict')
    args = parser.parse_args()
    args.warmup = max(args.warmup, 3)
    return args


def detections(output: list) -> int:
    return len(output[0].pred_instances)


def proposals(model: torch.nn.Module, run) -> int:
    """How many proposals the box head of ``model`` gets in ``run()`` (0 if it has none)."""
    extractor = getattr(getattr(model, 'roi_head', None), 'bbox_roi_extractor', None)
    if extractor is None:
        return 0
    seen = []
    handle = extractor.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[0]))
    try:
        run()
    finally:
        handle.remove()
    return sum(seen)


def discordant_pairs(names: List[str], gflops: List[float],
                     latency: List[float]) -> List[str]:
    """Pairs where more GFLOPs do not mean more latency (or the reverse)."""
    pairs = []
    for i, j in itertools.combinations(range(len(names)), 2):
        if (gflops[i] - gflops[j]) * (latency[i] - latency[j]) < 0:
            low, high = (i, j) if gflops[i] < gflops[j] else (j, i)
            pairs.append(f'{names[low]} ({gflops[low]:.3g} GFLOPs, {latency[low]:.3g} ms) '
                         f'vs {names[high]} ({gflops[high]:.3g} GFLOPs, '
                         f'{latency[high]:.3g} ms)')
    return pairs


def side_ratio(times: Dict[str, List[float]], config: str, side: str, other: str,
               suffix: str = '') -> float:
    """``side`` / ``other`` at ``config`` (``suffix``: which call), paired by round."""
    return paired_ratio(times[f'{config} {side}{suffix}'], times[f'{config} {other}{suffix}'])


def split_ratios(point: dict, warmup: int) -> Dict[str, float]:
    """Features adaptive / native and exported / native for the first call of each sample
    and the later ones (paired by round, warm-up rounds left out)."""
    ratios = {}
    for key, samples in (('first', point['first_call']), ('later', point['later_calls'])):
        if samples['native'][warmup:]:
            for side in ('adaptive', 'exported'):
                ratios[f'feat_{key}_{side}_native'] = paired_ratio(
                    samples[side][warmup:], samples['native'][warmup:])
    return ratios


def _grid_point(model, cfg, config: SubnetConfig, rescaler, batch: dict, calls: int,
                device: str) -> dict:
    """The three models of ``config``, its input, and the timed cases (predict, features)."""
    inputs, samples = rescaler(batch['inputs'], batch['data_samples'], config)
    stock_cfg, state_dict = export_config_and_weights(model, cfg, config)
    # the switch AdaptiveInferencer makes: set_width walks the whole model, and doing that
    # right before a timed sample made the sample 0.5-1.9% slower in 3 ad-hoc runs, a cost
    # a deployed model switching configuration does not pay
    snapshot = WidthSnapshot(model, config.width)
    models = {'adaptive': model, 'exported': build_stock_model(stock_cfg, state_dict),
              'native': build_model(stock_cfg, seed=1).eval()}
    models['native'].load_state_dict(state_dict)
    for side in ('exported', 'native'):
        models[side].to(device)
    clock = device_clock(device)
    outputs: Dict[str, list] = {}
    # per sample: the first extract_feat call (after other models ran) and the mean of
    # the later ones, to tell a cold start from the steady state
    first_call: Dict[str, List[float]] = {side: [] for side in SIDES}
    later_calls: Dict[str, List[float]] = {side: [] for side in SIDES}

    def predict(side: str, repeat: int = 1) -> None:
        with torch.no_grad():
            for _ in range(repeat):
                outputs[side] = models[side](inputs, samples, mode='predict')

    def features(side: str) -> None:
        ends = [clock()]
        with torch.no_grad():
            for _ in range(calls):
                models[side].extract_feat(inputs)
                ends.append(clock())
        first_call[side].append(ends[1] - ends[0])
        if calls > 1:
            later_calls[side].append((ends[-1] - ends[1]) / (calls - 1))

    cases = []
    timed_predict = partial(predict, repeat=calls)
    for run, suffix in ((timed_predict, ''), (features, ' features')):
        cases += [Case(f'{config.name} {side}{suffix}', lambda run=run, side=side: run(side),
                       setup=snapshot.restore if side == 'adaptive' else None)
                  for side in SIDES]
    return dict(models=models, outputs=outputs, predict=predict, cases=cases,
                first_call=first_call, later_calls=later_calls,
                input='x'.join(map(str, inputs.shape[-2:])))


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Inference latency: adaptive vs. exported vs. native stock (batch 1)', args)
    print_device(args.device)
    root = generated_data(args.size, num_train=2, root=args.data_root)
    cfg = config_on_generated_data(args.config, root, args.size, batch_size=1)
    keep_every_detection(cfg)
    model = build_model(cfg).eval()
    if args.checkpoint:
        load_adaptive_weights(model, args.checkpoint)
    model.to(args.device)
    with torch.no_grad():
        batch = model.data_preprocessor(first_batch(cfg, 'test_dataloader'), False)
    rescaler = DetBatchRescaler()
    print(describe(model) + '\n', flush=True)

    configs = [SubnetConfig(w, s) for w, s in itertools.product(args.widths, args.scales)]
    grid = [_grid_point(model, cfg, config, rescaler, batch, args.calls, args.device)
            for config in configs]
    cases = [case for point in grid for case in point['cases']]
    print(f'{len(configs)} configurations x {len(cases) // len(configs)} cases, all '
          'in every round: the three sides of a case together, blocks and sides in a new '
          'random order each round', flush=True)
    times = time_interleaved(cases, args.repeats, args.warmup, device_clock(args.device),
                             block=len(SIDES))

    rows: List[Dict[str, object]] = []
    for config, point in zip(configs, grid):
        set_width(model, config.width)
        predict = point['predict']
        cost = count_cost(model, lambda predict=predict: predict('adaptive'))
        boxes = [proposals(point['models'][side],
                           lambda side=side, predict=predict: predict(side))
                 for side in SIDES]
        name = config.name
        ms = {side: median(times[f'{name} {side}']) * 1000 / args.calls for side in SIDES}
        ratio = partial(side_ratio, times, name)
        rows.append(dict(
            config=name, input=point['input'], gflops=cost['total']['gmacs'],
            **{f'{side}_ms': ms[side] for side in SIDES},
            quartiles='; '.join(spread(times[f'{name} {side}']) for side in SIDES),
            adaptive_native=ratio('adaptive', 'native'),
            exported_native=ratio('exported', 'native'),
            adaptive_exported=ratio('adaptive', 'exported'),
            feat_adaptive_native=ratio('adaptive', 'native', ' features'),
            feat_exported_native=ratio('exported', 'native', ' features'),
            **split_ratios(point, args.warmup),
            proposals='/'.join(map(str, boxes)),
            detections='/'.join(str(detections(point['outputs'][side])) for side in SIDES)))

    print(f'\nmedian latency of predict per call, batch 1 ({args.repeats} interleaved rounds '
          f'of {args.calls} consecutive calls, '
          f'{args.warmup} warm-up); ratios: medians of the per-round ratios; quartiles in the '
          'order adaptive; exported; native; '
          'proposals and detections adaptive/exported/native; feat_*: the same ratios for '
          'extract_feat alone (backbone and neck: no weight-dependent box post-processing), '
          'feat_first / feat_later: of the first call of each sample (after the other '
          'models ran) and of the later calls:')
    print(markdown_table(rows))
    print()
    for key, label, target in (
            ('adaptive_native', 'adaptive / native', args.target_predict),
            ('exported_native', 'exported / native', args.target_exported),
            ('feat_adaptive_native', 'features adaptive / native', args.target_features)):
        values = [row[key] for row in rows]
        print(f'{label}: worst {max(values):.3f}, median {median(values):.3f}'
              + target_note(values, target))
    for key in ('adaptive_exported', 'feat_exported_native',
                'feat_first_adaptive_native', 'feat_first_exported_native',
                'feat_later_adaptive_native', 'feat_later_exported_native'):
        if key not in rows[0]:
            continue
        values = [row[key] for row in rows]
        print(f'{key}: median {median(values):.3f}, range {min(values):.3f}-{max(values):.3f}')

    names = [row['config'] for row in rows]
    gflops = [row['gflops'] for row in rows]
    print('\nGFLOPs vs. latency over the grid (Spearman rank correlation; discordant pairs '
          f'out of {len(rows) * (len(rows) - 1) // 2}):')
    summary = []
    for side in SIDES:
        latency = [row[f'{side}_ms'] for row in rows]
        rho = spearmanr(gflops, latency).statistic
        summary.append(dict(model=side, spearman=float(rho),
                            discordant=len(discordant_pairs(names, gflops, latency))))
    print(markdown_table(summary))
    pairs = discordant_pairs(names, gflops, [row['native_ms'] for row in rows])
    print('\ndiscordant pairs (native stock latency):')
    print('\n'.join(f'- {pair}' for pair in pairs) or '- none')
    print_footer(started)


if __name__ == '__main__':
    main()
