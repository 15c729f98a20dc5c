"""Peak memory of one mutual training iteration vs. one plain iteration (full config).

Each measurement runs in a fresh process: build the model and its optimizer, load the
batch, then read the resident set (VmRSS), reset the kernel's high-water mark
(``/proc/self/clear_refs``), run ONE training iteration and read the high-water mark
(VmHWM). The figure is the peak increase over the resident set before the iteration:
activations, gradients, optimizer state (created by the first step, on both sides) and
whatever the allocator keeps. Cases, each in its own process, rounds interleaved:

- mutual: ``MutualTrainStep`` over the cohort (full configuration first);
- plain adaptive: the slimmable detector's own ``train_step`` at the full configuration;
- plain stock: the stock detector of the full configuration, ``train_step``.

    python benchmarks/memory.py                    # demo Mask R-CNN, 128 px, batch 8
"""
import argparse
import copy
import json
import subprocess
import sys
import time

from common import (
    add_model_args,
    build_model,
    config_on_generated_data,
    first_batch,
    generated_data,
    markdown_table,
    median,
    print_footer,
    print_header,
    scope_of,
)

CASES = ('mutual', 'plain adaptive', 'plain stock')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_args(parser, size=128, batch_size=8, repeats=3)
    parser.add_argument('--iteration', type=int, default=0,
                        help='the cohort of this training iteration runs')
    parser.add_argument('--worker', choices=CASES, help=argparse.SUPPRESS)
    return parser.parse_args()


def _status_kb(field: str) -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False if not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> None:
    """Measure one case in this (fresh) process and print the figures as JSON."""
    import gc

    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from train_overhead import build_mutual_side

    from mutualnet_mm.deploy import stock_model_config

    cfg = config_on_generated_data(args.config, args.data_root, args.size, args.batch_size)
    data = first_batch(cfg)
    model, optim_wrapper, step = build_mutual_side(cfg)
    if args.worker == 'mutual':
        def run():
            return step(model, data, optim_wrapper, args.iteration)
    else:
        if args.worker == 'plain stock':
            stock_cfg = stock_model_config(model, cfg.model, step.sampler.full.width)
            model = build_model(cfg, stock_cfg).train()
            with DefaultScope.overwrite_default_scope(scope_of(cfg)):
                optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))

        def run():
            return model.train_step(data, optim_wrapper)
    gc.collect()
    before = _status_kb('VmRSS')
    method = 'VmHWM after clear_refs' if reset_peak() else 'ru_maxrss (no clear_refs)'
    run()
    if method.startswith('VmHWM'):
        peak = _status_kb('VmHWM')
    else:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(case=args.worker, before_mb=before / 1024, peak_mb=peak / 1024,
                          increase_mb=(peak - before) / 1024, method=method)))


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    started = time.perf_counter()
    print_header('Peak memory: mutual vs. plain training iteration', args)
    args.data_root = generated_data(args.size, num_train=args.batch_size, root=args.data_root)
    cfg = config_on_generated_data(args.config, args.data_root, args.size, args.batch_size)
    from train_overhead import build_mutual_side
    model, _, step = build_mutual_side(cfg)
    print('cohort of the mutual iteration: '
          + ', '.join(c.name for c in step.sampler.cohort(args.iteration)))
    print(f'model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters\n',
          flush=True)
    del model, step
    results = {case: [] for case in CASES}
    method = ''
    for _ in range(args.repeats):
        for case in CASES:
            command = [sys.executable, __file__, '--worker', case, '--config', args.config,
                       '--size', str(args.size), '--batch-size', str(args.batch_size),
                       '--iteration', str(args.iteration), '--data-root', args.data_root]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stdout + done.stderr)
                raise SystemExit(f'the {case!r} worker failed ({done.returncode})')
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            results[case].append(figures)
            method = figures['method']
            print(f"{case}: +{figures['increase_mb']:.0f} MB over {figures['before_mb']:.0f} "
                  'MB', flush=True)
    rows = []
    plain = median([r['increase_mb'] for r in results['plain stock']])
    for case in CASES:
        increases = [r['increase_mb'] for r in results[case]]
        rows.append(dict(case=case, peak_increase_mb=median(increases),
                         range_mb=f'{min(increases):.0f}-{max(increases):.0f}',
                         rss_before_mb=median([r['before_mb'] for r in results[case]]),
                         ratio_to_plain_stock=median(increases) / plain))
    print(f'\npeak memory increase of one iteration ({method}; median of {args.repeats} '
          'fresh processes per case):')
    print(markdown_table(rows))
    print_footer(started)


if __name__ == '__main__':
    main()
