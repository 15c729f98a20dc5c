"""Peak memory of a mutual training iteration vs. its passes run plainly, like for like.

Each measurement runs in a fresh process. Every process first does the same: build the
adaptive model (seeded), run one mutual iteration on a copy of the batch that records
what each configuration's pass was given (the rescaled batch and torch's random state, as
``train_overhead.py`` does) and restore the starting weights. Then it reads the resident
set (VmRSS), resets the kernel's high-water mark (``/proc/self/clear_refs``), runs
training iterations of its case and reads the high-water mark (VmHWM) after the first one
and after the third one. Figures are the peak increase over the resident set before the
first measured iteration: activations, gradients, optimizer state (AdamW's two moments,
created by the first optimizer step on both sides: each case starts with a fresh
optimizer). The worker processes run with a fixed glibc mmap threshold
(``MALLOC_MMAP_THRESHOLD_=65536``): large blocks go back to the system when freed, so the
resident set follows the live tensors instead of glibc's dynamic heap growth. Cases, each
in its own process, rounds interleaved:

- mutual: ``MutualTrainStep`` over the cohort (full configuration first);
- plain <configuration>: the stock twin of one configuration of the cohort, carrying the
  adaptive model's sliced weights, one plain training step on exactly the batch the
  mutual step gave that configuration, from the same random state (the same RoIs).

The comparison is the mutual iteration against the largest of its plain passes. The
floor a mutual iteration cannot go under is printed beside it: its passes after the
first run while the cohort's summed gradients (one set of full-size gradients) are held,
so the floor is the larger of the first pass's peak and every later pass's peak plus one
set of full gradients.

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
from typing import Dict, List

from common import (
    add_device_arg,
    add_model_args,
    config_on_generated_data,
    describe,
    first_batch,
    generated_data,
    markdown_table,
    median,
    print_device,
    print_footer,
    print_header,
)

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
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # 'mutual' or 'plain:<index>'
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
    from train_overhead import (
        build_mutual_side,
        build_twin,
        capture_batches,
        optim_wrapper_of,
        plain_pass,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_on_generated_data(args.config, args.data_root, args.size, args.batch_size)
    data = first_batch(cfg)
    model, optim_wrapper, step = build_mutual_side(cfg, device=args.device)
    start_rng = torch.get_rng_state()
    weights = copy.deepcopy(model.state_dict())
    batches = capture_batches(step, model, optim_wrapper, data, args.iteration)
    model.load_state_dict(weights)
    del weights
    if args.worker == 'mutual':
        optim_wrapper = optim_wrapper_of(cfg, model)  # no optimizer state yet
        name = 'mutual'
        copies = [copy.deepcopy(data) for _ in range(ITERATIONS)]
        del batches

        def run():
            torch.set_rng_state(start_rng)  # the passes draw what the recorded ones drew
            return step(model, copies.pop(0), optim_wrapper, args.iteration)
    else:
        index = int(args.worker.partition(':')[2])
        config = step.sampler.cohort(args.iteration)[index]
        name = f'plain {config.name}'
        batch = batches[index]
        twin = build_twin(model, cfg, config, args.device)
        del model, optim_wrapper, step, batches
        model, optim_wrapper = twin, optim_wrapper_of(cfg, twin)
        samples = [copy.deepcopy(batch.samples) for _ in range(ITERATIONS)]

        def run():
            torch.set_rng_state(batch.rng_state)
            pass_samples = samples.pop(0)
            return plain_pass(model, optim_wrapper, batch.loaded(pass_samples), batch.inputs,
                              pass_samples)
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
    print(json.dumps(dict(case=name, before_mb=before / 1024,
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


def memory_rows(results: Dict[str, List[dict]]) -> List[dict]:
    """Per case (the mutual iteration first, then its plain passes in cohort order), the
    median and range of its processes' figures and the ratio to the largest plain pass;
    then the floor of a mutual iteration (see the module docstring) with its ratio."""
    keys = (('first_mb', 'first'), ('steady_mb', f'iters_1-{ITERATIONS}'))
    medians = {case: {key: median([r[key] for r in records]) for key, _ in keys}
               for case, records in results.items()}
    plain = [case for case in results if case != 'mutual']
    largest = {key: max(medians[case][key] for case in plain) for key, _ in keys}
    gradients = median([r['params_mb'] for r in results['mutual']])
    rows = []
    for case, records in results.items():
        row = dict(case=case)
        for key, label in keys:
            values = [r[key] for r in records]
            row[f'{label}_mb'] = medians[case][key]
            row[f'{label}_range'] = f'{min(values):.0f}-{max(values):.0f}'
            row[f'{label}_ratio'] = medians[case][key] / largest[key]
        row['params_mb'] = median([r['params_mb'] for r in records])
        rows.append(row)
    floor = dict(case='floor: first pass, or a later one holding the summed gradients')
    for key, label in keys:
        values = [medians[plain[0]][key]] + [medians[case][key] + gradients
                                             for case in plain[1:]]
        floor.update({f'{label}_mb': max(values), f'{label}_range': '',
                      f'{label}_ratio': max(values) / largest[key]})
    rows.append(dict(floor, params_mb=gradients))
    return rows


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    started = time.perf_counter()
    print_header('Peak memory: mutual iteration vs. its plain passes, like for like', args)
    print_device(args.device)
    args.data_root = generated_data((args.height or args.size, args.size),
                                    num_train=args.batch_size, root=args.data_root)
    cfg = config_on_generated_data(args.config, args.data_root, args.size, args.batch_size)
    from train_overhead import build_mutual_side
    model, _, step = build_mutual_side(cfg)  # on the CPU: only its cohort is printed
    print(f'cohort of the mutual iteration ({args.iteration}): '
          + ', '.join(c.name for c in step.sampler.cohort(args.iteration)))
    print(describe(model) + '\n', flush=True)
    cases = ['mutual'] + [f'plain:{index}'
                          for index in range(len(step.sampler.cohort(args.iteration)))]
    del model, step
    results: Dict[str, List[dict]] = {}
    method = ''
    for _ in range(args.repeats):
        for case in cases:
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
            results.setdefault(figures['case'], []).append(figures)
            method = figures['method']
            print(f"{figures['case']}: +{figures['first_mb']:.0f} MB (first iteration), "
                  f"+{figures['steady_mb']:.0f} MB (iterations 1-{ITERATIONS}) over "
                  f"{figures['before_mb']:.0f} MB", flush=True)
    measured = 'allocated CUDA memory' if method.startswith('torch.cuda') else 'the resident set'
    print(f'\npeak increase of {measured} over that before the first iteration, MB '
          f'({method}; median and range of {args.repeats} fresh processes per case; ratios '
          'to the largest plain pass; params_mb: the size of the parameters, i.e. of one '
          'set of gradients):')
    print(markdown_table(memory_rows(results)))
    print_footer(started)


if __name__ == '__main__':
    main()
