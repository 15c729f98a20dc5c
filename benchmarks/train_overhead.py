"""Training overhead: one mutual iteration versus plain stock iterations of its cohort.

The mutual side is :class:`MutualTrainStep` on one batch: preprocess once, then per
configuration of the cohort set the width, rescale the batch, forward, backward; one
optimizer step. The plain side is, for each configuration of the same cohort, a STOCK
detector built natively at that width (``stock_model_config``) doing its own plain
``train_step`` (preprocess, forward, backward, optimizer step) on the same images already
loaded at that configuration's size by the data pipeline: the rescaling is outside the
timed region on the plain side and inside it on the mutual side, where it is part of
the method. It prints mutual / sum of plain (``--target 1.10`` also prints whether it is
within 1.10).

With ``--profile N`` the script profiles N mutual iterations with cProfile instead and
prints the functions taking the most time.

    python benchmarks/train_overhead.py            # demo Mask R-CNN, 128 px, batch 8
    python benchmarks/train_overhead.py --device cuda   # on a GPU (mmcv with CUDA ops)
"""
import argparse
import copy
import cProfile
import io
import pstats
import time

import torch
from common import (
    Case,
    add_device_arg,
    add_model_args,
    add_target_arg,
    build_model,
    config_on_generated_data,
    describe,
    device_clock,
    first_batch,
    generated_data,
    markdown_table,
    median,
    paired_ratio,
    print_device,
    print_footer,
    print_header,
    scope_of,
    spread,
    target_note,
    time_interleaved,
)
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mutualnet_mm.deploy import stock_model_config
from mutualnet_mm.engine import MutualTrainStep
from mutualnet_mm.ops import set_width


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_args(parser, size=128, batch_size=8, repeats=10)
    add_device_arg(parser)
    parser.add_argument('--iteration', type=int, default=0,
                        help='the cohort of this training iteration is timed (the config\'s '
                             'warm-up is left out: every iteration trains a cohort)')
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='profile N mutual iterations (cProfile) instead of timing')
    add_target_arg(parser, what='mutual / sum of stock')
    return parser.parse_args()


def build_mutual_side(cfg, seed: int = 0, device: str = 'cpu'):
    """The adaptive model in training mode on ``device``, its optimizer and the mutual step."""
    model = build_model(cfg, seed=seed).to(device).train()
    optim_wrapper = _optim_wrapper(cfg, model)
    # Without the warm-up (the full network alone), every iteration trains a cohort.
    mutual = {key: value for key, value in (cfg.train_cfg.get('mutual') or {}).items()
              if not key.startswith('full_only')}
    step = MutualTrainStep.from_config(copy.deepcopy(mutual), model, seed=seed)
    return model, optim_wrapper, step


#: Where a mutual iteration spends its time: (label, file name ending, function name).
PROFILE_PARTS = (
    ('data preprocessor (once)', 'data_preprocessors/data_preprocessor.py', 'forward'),
    ('set_width (per pass + reset)', 'mutualnet_mm/ops/slimmable.py', 'set_width'),
    ('DetBatchRescaler (per pass)', 'mutualnet_mm/engine/rescale.py', '__call__'),
    ('model forward, loss mode', 'mmdet/models/detectors/base.py', 'forward'),
    ('backward', 'optimizer/optimizer_wrapper.py', 'backward'),
    ('optimizer step (once)', 'optimizer/optimizer_wrapper.py', 'step'),
    ('zero_grad (once)', 'optimizer/optimizer_wrapper.py', 'zero_grad'),
)


def profile(step, model, optim_wrapper, data, iteration: int, count: int) -> None:
    """cProfile ``count`` mutual iterations: the step's parts, then the top functions."""
    step(model, copy.deepcopy(data), optim_wrapper, iteration)  # warm-up
    profiler = cProfile.Profile()
    for _ in range(count):
        batch = copy.deepcopy(data)
        profiler.enable()
        step(model, batch, optim_wrapper, iteration)
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = _cumulative(stats, 'mutualnet_mm/engine/mutual_step.py', '__call__', outermost=True)
    rows = []
    for label, path, function in PROFILE_PARTS:
        seconds = _cumulative(stats, path, function, outermost=True)
        rows.append(dict(part=label, ms_per_iteration=seconds / count * 1000,
                         share=f'{seconds / total * 100:.1f}%'))
    rows.append(dict(part='mutual step, total', ms_per_iteration=total / count * 1000,
                     share='100%'))
    print(f'where a mutual iteration spends its time (cProfile, {count} iterations after '
          'one warm-up; cumulative times, profiler overhead included):')
    print(markdown_table(rows))
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats('tottime').print_stats(20)
    stats.print_stats('mutualnet_mm', 20)
    print(out.getvalue())


def _cumulative(stats: pstats.Stats, path: str, function: str, outermost: bool) -> float:
    """Cumulative seconds of the matching functions (only calls not made by one another)."""
    keys = [key for key in stats.stats if key[0].endswith(path) and key[2] == function]
    seconds = 0.0
    for key in keys:
        _, _, _, cumulative, callers = stats.stats[key]
        if outermost:  # leave out the time of calls made from a matching function
            cumulative -= sum(callers[c][3] for c in callers if c in keys)
        seconds += cumulative
    return seconds


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Training overhead: mutual iteration vs. plain stock iterations', args)
    print_device(args.device)
    root = generated_data((args.height or args.size, args.size), num_train=args.batch_size,
                          root=args.data_root)
    cfg = config_on_generated_data(args.config, root, args.size, args.batch_size)
    model, optim_wrapper, step = build_mutual_side(cfg, device=args.device)
    data = first_batch(cfg)
    cohort = step.sampler.cohort(args.iteration)
    print(describe(model) + '\n', flush=True)
    if args.profile:
        profile(step, model, optim_wrapper, data, args.iteration, args.profile)
        print_footer(started)
        return

    mutual_batch = [None]
    cases = [Case('mutual', lambda: step(model, mutual_batch[0], optim_wrapper,
                                         args.iteration),
                  setup=lambda: mutual_batch.__setitem__(0, copy.deepcopy(data)))]
    # The breakdown: the adaptive model's own plain train_step at each configuration
    # (a copy, so the mutual side's weights are not touched).
    adaptive = copy.deepcopy(model)
    adaptive_optim = _optim_wrapper(cfg, adaptive)
    rows = []
    for index, config in enumerate(cohort):
        stock_cfg = stock_model_config(model, cfg.model, config.width)
        stock = build_model(cfg, stock_cfg, seed=index).to(args.device).train()
        size = max(1, round(args.size * config.scale))
        scaled_data = first_batch(config_on_generated_data(args.config, root, size,
                                                           args.batch_size))
        cases.append(_plain_case(f'stock {config.name}', stock, _optim_wrapper(cfg, stock),
                                 scaled_data))
        cases.append(_plain_case(f'adaptive {config.name}', adaptive, adaptive_optim,
                                 scaled_data, width=config.width))
        rows.append(dict(config=config.name,
                         input='x'.join(map(str, scaled_data['inputs'][0].shape[-2:])),
                         stock_backbone=', '.join(
                             f'{k}={stock_cfg["backbone"][k]}'
                             for k in ('depth', 'base_channels') if k in stock_cfg['backbone']),
                         stock_mparams=sum(p.numel() for p in stock.parameters()) / 1e6))
    set_width(model, step.sampler.full.width)
    print(f'cohort of iteration {args.iteration}:')
    print(markdown_table(rows))
    print(flush=True)

    torch.manual_seed(0)
    times = time_interleaved(cases, args.repeats, args.warmup, device_clock(args.device))
    sums = {side: [sum(times[name][i] for name in times if name.startswith(side + ' '))
                   for i in range(args.repeats)] for side in ('stock', 'adaptive')}
    table = [dict(side=name, median_s=median(values), quartiles=spread(values))
             for name, values in times.items()]
    table += [dict(side=f'sum of {side}', median_s=median(values), quartiles=spread(values))
              for side, values in sums.items()]
    print(f'seconds per iteration ({args.repeats} interleaved rounds, {args.warmup} warm-up); '
          '"stock": stock detectors built at each width, "adaptive": the slimmable '
          "detector's plain train_step at each configuration:")
    print(markdown_table(table))
    ratio = median(times['mutual']) / median(sums['stock'])
    print(f'\nmutual / sum of stock: {ratio:.3f} (ratio of medians; median of per-round '
          f'ratios {paired_ratio(times["mutual"], sums["stock"]):.3f})'
          + target_note([ratio], args.target))
    step_ratio = median(times['mutual']) / median(sums['adaptive'])
    layer_ratio = median(sums['adaptive']) / median(sums['stock'])
    print(f'breakdown: mutual / sum of adaptive {step_ratio:.3f} (the step itself: one '
          'preprocessing, rescaling, one optimizer step); sum of adaptive / sum of stock '
          f'{layer_ratio:.3f} (slimmable vs. stock detectors: sliced layers, and each plain '
          'step of the adaptive detector updates all its parameters)')
    print_footer(started)


def _optim_wrapper(cfg, model):
    with DefaultScope.overwrite_default_scope(scope_of(cfg)):
        return build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))


def _plain_case(name: str, model, optim_wrapper, data: dict, width=None) -> Case:
    """A plain ``train_step`` on a fresh copy of ``data`` (at ``width`` if given)."""
    holder = [None]

    def setup() -> None:
        if width is not None:
            set_width(model, width)
        holder[0] = copy.deepcopy(data)

    return Case(name, lambda: model.train_step(holder[0], optim_wrapper), setup)


if __name__ == '__main__':
    main()
