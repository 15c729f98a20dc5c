"""Peak memory of a mutual training iteration vs. a plain iteration (full config).

Each measurement runs in a fresh process: build the model and its optimizer, load the
batch, read the resident set (VmRSS), reset the kernel's high-water mark
(``/proc/self/clear_refs``), then run training iterations on the batch and read the
high-water mark (VmHWM) after the first one and after the third one. Figures are the
peak increase over the resident set before the first iteration: activations, gradients,
optimizer state (AdamW's two moments, created by the first optimizer step on both
sides). The worker processes run with a fixed glibc mmap threshold
(``MALLOC_MMAP_THRESHOLD_=65536``): large blocks go back to the system when freed, so the
resident set follows the live tensors instead of glibc's dynamic heap growth, which
otherwise raises the high-water mark from one iteration to the next on both sides alike.
Cases, each in its own process, rounds interleaved:

- mutual: ``MutualTrainStep`` over the cohort (full configuration first);
- plain adaptive: the slimmable detector's own ``train_step`` at the full configuration;
- plain stock: the stock detector of the full configuration, ``train_step``;
- plain stock, gradients first: the same, with every gradient allocated (zeros) before
  its forward, as passes after the first one of a mutual step run: the peak of one pass
  that accumulates into existing gradients.

On a GPU (``--device cuda``) the figures are torch's own: the peak of allocated CUDA
memory (``torch.cuda.max_memory_allocated``) over what was allocated before the first
iteration, i.e. live tensors exactly, with no allocator or page rounding.

    python benchmarks/memory.py                    # demo Mask R-CNN, 128 px, batch 8
    python benchmarks/memory.py --device cuda      # on a GPU (mmcv with CUDA ops)
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import time

from common import (
    add_device_arg,
    add_model_args,
    build_model,
    config_on_generated_data,
    describe,
    first_batch,
    generated_data,
    markdown_table,
    median,
    print_device,
    print_footer,
    print_header,
    scope_of,
)

CASES = ('mutual', 'plain adaptive', 'plain stock', 'plain stock, gradients first')
#: Iterations per process: the first (no optimizer state yet) and two more.
ITERATIONS = 3
#: glibc: a fixed mmap threshold (no dynamic growth), see the module docstring.
WORKER_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_args(parser, size=128, batch_size=8, repeats=3)
    add_device_arg(parser)
    parser.add_argument('--iteration', type=int, default=0,
                        help='the cohort of this training iteration runs (the config\'s '
                             'warm-up is left out: every iteration trains a cohort)')
    parser.add_argument('--mmap-threshold', type=int, default=65536,
                        help="glibc's MALLOC_MMAP_THRESHOLD_ for the workers, in bytes: "
                             'blocks at least this large are mapped and go back to the '
                             'system when freed (4096: nearly every tensor, so the resident '
                             'set follows the live tensors)')
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

    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from train_overhead import build_mutual_side

    from mutualnet_mm.deploy import stock_model_config

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_on_generated_data(args.config, args.data_root, args.size, args.batch_size)
    data = first_batch(cfg)
    model, optim_wrapper, step = build_mutual_side(cfg, device=args.device)
    if args.worker == 'mutual':
        def run():
            return step(model, data, optim_wrapper, args.iteration)
    else:
        if args.worker.startswith('plain stock'):
            stock_cfg = stock_model_config(model, cfg.model, step.sampler.full.width)
            model = build_model(cfg, stock_cfg).to(args.device).train()
            with DefaultScope.overwrite_default_scope(scope_of(cfg)):
                optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        gradients_first = args.worker.endswith('gradients first')

        def run():
            if gradients_first:
                for param in model.parameters():
                    if param.requires_grad:
                        param.grad = torch.zeros_like(param)
            return model.train_step(data, optim_wrapper)
    gc.collect()
    if torch.device(args.device).type == 'cuda':
        torch.cuda.synchronize(args.device)
        torch.cuda.reset_peak_memory_stats(args.device)
        before = torch.cuda.memory_allocated(args.device) // 1024
        method = 'torch.cuda.max_memory_allocated'
    else:
        before = _status_kb('VmRSS')
        method = 'VmHWM after clear_refs' if reset_peak() else 'ru_maxrss (no clear_refs)'
    peaks = []
    for _ in range(ITERATIONS):
        run()
        peaks.append(_peak_kb(method, args.device))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps(dict(case=args.worker, before_mb=before / 1024,
                          first_mb=(peaks[0] - before) / 1024,
                          steady_mb=(peaks[-1] - before) / 1024,
                          params_mb=params / 2**20, method=method)))


def _peak_kb(method: str, device: str) -> int:
    if method.startswith('torch.cuda'):
        import torch
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) // 1024
    if method.startswith('VmHWM'):
        return _status_kb('VmHWM')
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    started = time.perf_counter()
    print_header('Peak memory: mutual vs. plain training iteration', args)
    print_device(args.device)
    args.data_root = generated_data((args.height or args.size, args.size),
                                    num_train=args.batch_size, root=args.data_root)
    cfg = config_on_generated_data(args.config, args.data_root, args.size, args.batch_size)
    from train_overhead import build_mutual_side
    model, _, step = build_mutual_side(cfg)  # on the CPU: only its cohort is printed
    print(f'cohort of the mutual iteration ({args.iteration}): '
          + ', '.join(c.name for c in step.sampler.cohort(args.iteration)))
    print(describe(model) + '\n', flush=True)
    del model, step
    results = {case: [] for case in CASES}
    method = ''
    for _ in range(args.repeats):
        for case in CASES:
            command = [sys.executable, __file__, '--worker', case, '--config', args.config,
                       '--size', str(args.size), '--batch-size', str(args.batch_size),
                       '--iteration', str(args.iteration), '--data-root', args.data_root,
                       '--device', args.device]
            command += ['--threads', str(args.threads)] if args.threads else []
            command += ['--height', str(args.height)] if args.height else []
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env={**os.environ, **WORKER_ENV,
                                       'MALLOC_MMAP_THRESHOLD_': str(args.mmap_threshold)})
            if done.returncode:
                print(done.stdout + done.stderr)
                raise SystemExit(f'the {case!r} worker failed ({done.returncode})')
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            results[case].append(figures)
            method = figures['method']
            print(f"{case}: +{figures['first_mb']:.0f} MB (first iteration), "
                  f"+{figures['steady_mb']:.0f} MB (iterations 1-{ITERATIONS}) over "
                  f"{figures['before_mb']:.0f} MB", flush=True)
    rows = []
    plain = {key: median([r[key] for r in results['plain stock']])
             for key in ('first_mb', 'steady_mb')}
    for case in CASES:
        row = dict(case=case)
        for key, label in (('first_mb', 'first'), ('steady_mb', f'iters_1-{ITERATIONS}')):
            values = [r[key] for r in results[case]]
            row[f'{label}_mb'] = median(values)
            row[f'{label}_range'] = f'{min(values):.0f}-{max(values):.0f}'
            row[f'{label}_ratio'] = median(values) / plain[key]
        row['params_mb'] = median([r['params_mb'] for r in results[case]])
        rows.append(row)
    measured = 'allocated CUDA memory' if method.startswith('torch.cuda') else 'the resident set'
    print(f'\npeak increase of {measured} over that before the first iteration, MB '
          f'({method}; median and range of {args.repeats} fresh processes per case; ratios '
          'to plain stock; params_mb: the size of the parameters, i.e. of one set of '
          'gradients):')
    print(markdown_table(rows))
    print_footer(started)


if __name__ == '__main__':
    main()
