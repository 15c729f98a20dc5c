"""Method study on the digits demo: MutualNet vs. width-only vs. independent networks.

Every run trains the digits demo classifier (``configs/demo/resnet18_mutual_digits.py``,
same data and recipe) with only the compared setting changed, at equal training passes
(forward-backward passes of a batch), then evaluates its configurations with the stock
per-configuration loop (BN calibration, top-1 on the 359 validation digits):

- ``mutualnet``: the width + resolution cohort, 4 passes per iteration, ``--epochs``.
- ``width_only``: the US-Net rule, the same cohort with every pass at 32 px.
- ``independent``: networks of widths 1.0, 0.75, 0.5 and 0.25 trained alone for
  ``--epochs`` each (as many passes together as one cohort run), each evaluated at the
  four resolutions.
- ``full_alone``: the full network alone for ``4 x --epochs`` (the passes of one cohort
  run on one network): does mutual learning boost the full network?

Runs go one at a time (``tools/train.py``, each in its own process with
``OMP_NUM_THREADS=--threads``); a run whose ``per_config.json`` exists is skipped, so an
interrupted study resumes. The report (mean and range over the seeds) is printed and
written to ``--out``.

    python benchmarks/cls_method_study.py --seeds 0 1 2
    python benchmarks/cls_method_study.py --seeds 0 1 2 --report-only
"""
import argparse
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'resnet18_mutual_digits.py')
PASSES = 4  # the cohort of the demo: num_subnets
WIDTHS = (1.0, 0.75, 0.5, 0.25)
SIZES = (32, 27, 23, 18)  # the demo's resolutions
METRIC = 'accuracy/top1'


def runs(epochs: int) -> Dict[str, Tuple[str, List[str]]]:
    """``{run: (method, config options)}`` of one seed."""
    def schedule(n: int) -> List[str]:
        return [f'train_cfg.max_epochs={n}', f'train_cfg.val_interval={n}',
                f'param_scheduler.T_max={n}', f'default_hooks.checkpoint.interval={n}']

    def alone(width: float) -> List[str]:
        return [f'model.backbone.width_range=({width},{width})',
                'train_cfg.mutual.num_subnets=1', 'train_cfg.mutual.distill=None',
                f'val_cfg.widths=({width},)', f'test_cfg.widths=({width},)']

    table = {'mutualnet': ('mutualnet', schedule(epochs)),
             'width_only': ('width_only', schedule(epochs) + ['train_cfg.mutual.scales=(1.0,)'])}
    for width in WIDTHS:
        table[f'independent_w{width}'] = ('independent', schedule(epochs) + alone(width))
    table['full_alone'] = ('full_alone', schedule(PASSES * epochs) + alone(1.0))
    return table


def train(root: str, seed: int, epochs: int, threads: int) -> None:
    """Train the unfinished runs of ``seed`` into ``root/seed<seed>``, one at a time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=REPO)
    for name, (_, options) in runs(epochs).items():
        work_dir = osp.join(root, f'seed{seed}', name)
        if osp.isfile(osp.join(work_dir, 'per_config.json')):
            print(f'[skip] seed {seed} {name}: finished earlier', flush=True)
            continue
        os.makedirs(work_dir, exist_ok=True)
        command = [sys.executable, osp.join(REPO, 'tools', 'train.py'), CONFIG,
                   '--work-dir', work_dir, '--cfg-options', f'randomness.seed={seed}',
                   *options]
        start = time.time()
        with open(osp.join(work_dir, 'study_train.log'), 'w') as log:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT).returncode
        seconds = time.time() - start
        if code:
            print(f'[FAILED] seed {seed} {name}: exit {code}, see {log.name}', flush=True)
            continue
        with open(osp.join(work_dir, 'study_run.json'), 'w') as f:
            json.dump(dict(seed=seed, wall_s=seconds, threads=threads), f)
        print(f'[done] seed {seed} {name}: {seconds / 60:.1f} min', flush=True)


def load(root: str, seeds: List[int], epochs: int) -> Dict[str, Dict[int, List[dict]]]:
    """``{method: {seed: records}}`` of the finished runs."""
    results: Dict[str, Dict[int, List[dict]]] = {}
    for seed in seeds:
        for name, (method, _) in runs(epochs).items():
            path = osp.join(root, f'seed{seed}', name, 'per_config.json')
            if osp.isfile(path):
                with open(path) as f:
                    records = json.load(f)['records']
                results.setdefault(method, {}).setdefault(seed, []).extend(records)
    return results


def by_config(per_seed: Dict[int, List[dict]]) -> Dict[tuple, List[float]]:
    """``{(width, px): [top-1 per seed]}``."""
    table: Dict[tuple, List[float]] = {}
    for records in per_seed.values():
        for record in records:
            key = (record['width'], round(SIZES[0] * record['scale']))
            table.setdefault(key, []).append(record[METRIC])
    return table


def best_within(records: List[dict], budget: float) -> float:
    """The best top-1 of the configurations costing at most ``budget`` GFLOPs (nan: none)."""
    fitting = [r[METRIC] for r in records if r['gflops'] <= budget * (1 + 1e-6)]
    return max(fitting) if fitting else float('nan')


def wall_minutes(root: str, seeds: List[int], epochs: int) -> Dict[str, float]:
    """Mean wall time per seed of each method's runs together, in minutes."""
    totals: Dict[str, List[float]] = {}
    for seed in seeds:
        per_method: Dict[str, float] = {}
        for name, (method, _) in runs(epochs).items():
            path = osp.join(root, f'seed{seed}', name, 'study_run.json')
            if osp.isfile(path):
                with open(path) as f:
                    per_method[method] = per_method.get(method, 0.0) + json.load(f)['wall_s']
        for method, seconds in per_method.items():
            totals.setdefault(method, []).append(seconds / 60)
    return {m: sum(v) / len(v) for m, v in totals.items()}


def cell(values: List[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return '-'
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f'{mean:.1f}'
    return f'{mean:.1f} ({min(values):.1f}-{max(values):.1f})'


def report(root: str, seeds: List[int], epochs: int) -> str:
    results = load(root, seeds, epochs)
    methods = [m for m in ('mutualnet', 'width_only', 'independent', 'full_alone')
               if m in results]
    header = ['| ' + ' | '.join(methods) + ' |', '|---|---|' + '---|' * len(methods)]
    lines = [f'Top-1 (%) on the 359 validation digits, mean (min-max) over seeds {seeds}: '
             f'{epochs} epochs of {PASSES} passes per iteration for the cohort methods, '
             f'{epochs} epochs for each of the {len(WIDTHS)} independent networks, '
             f'{PASSES * epochs} for full_alone.', '',
             'Best configuration within a budget (the query table of each method):', '',
             '| MFLOPs <= | ' + header[0][2:], header[1][4:]]
    mutual = results.get('mutualnet', {})
    budgets = sorted({round(r['gflops'], 9) for records in mutual.values() for r in records
                      if round(SIZES[0] * r['scale']) in (SIZES[0], SIZES[-1])},
                     reverse=True)
    for budget in budgets:
        row = [cell([best_within(records, budget) for records in results[m].values()])
               for m in methods]
        lines.append(f'| {budget * 1e3:.2f} | ' + ' | '.join(row) + ' |')
    lines += ['', 'Every configuration:', '', '| width | px | ' + header[0][2:], header[1]]
    tables = {m: by_config(results[m]) for m in methods}
    for width in WIDTHS:
        for size in SIZES:
            row = [cell(tables[m].get((width, size), [])) for m in methods]
            if any(row):
                lines.append(f'| {width:g} | {size} | ' + ' | '.join(row) + ' |')
    minutes = wall_minutes(root, seeds, epochs)
    lines.append('| training + evaluation, min per seed | | '
                 + ' | '.join(f'{minutes.get(m, 0):.1f}' for m in methods) + ' |')
    return '\n'.join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--epochs', type=int, default=10,
                        help='epochs of the cohort methods and of each independent network')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run')
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'cls_method_study'))
    parser.add_argument('--out', default=osp.join(REPO, 'studies', 'results',
                                                  'cls_method_study.md'))
    parser.add_argument('--report-only', action='store_true')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not osp.isdir(osp.join(REPO, 'data', 'digits', 'train')):
        raise SystemExit('no data/digits: run `python tools/make_digits_data.py` first')
    if not args.report_only:
        for seed in args.seeds:
            train(args.work_dir, seed, args.epochs, args.threads)
    text = report(args.work_dir, args.seeds, args.epochs)
    print(text)
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write('# Method study on the digits demo\n\n'
                f'`python benchmarks/cls_method_study.py --seeds {" ".join(map(str, args.seeds))}'
                f' --epochs {args.epochs}`\n\n{text}\n')


if __name__ == '__main__':
    main()
