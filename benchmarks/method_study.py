"""Method study on the demo detection data, every method trained with the same budget.

Methods (all on ``configs/demo/maskrcnn_mutual_r18_shapes.py``, same data, seed and
schedule shape; only what is compared changes):

- ``mutualnet``: width + input-scale cohort from the first iteration, whole detector
  slimming.
- ``mutualnet_warmup``: the demo config as it is: the full network trains alone for 12
  epochs, then with the cohort for 12 (24 epochs; 60 epochs' worth of passes, fewer
  than the 64 of the others).
- ``mutualnet_distill``: the same with in-place distillation of the neck features from
  the full configuration (``FeatureDistiller``).
- ``width_only``: the US-Net sandwich rule, every pass at the full input scale.
- ``independent``: three networks trained alone at widths 1.0, 0.5 and 0.25.
- ``backbone_only``: MutualNet with only the backbone following the width
  (``configs/demo/maskrcnn_mutual_r18_shapes_backbone-only.py``), cohort from the start.
- ``backbone_only_warmup``: the same with the demo's schedule (as ``mutualnet_warmup``).

Budget: forward-backward passes of a batch. A cohort method runs ``num_subnets`` (4)
passes per iteration for ``E`` (16) epochs; each independent network runs one pass per
iteration for ``4E/3`` epochs, so the three of them together run as many passes as one
cohort method. The measured wall time of every run is reported next to it (passes at
smaller widths and scales are cheaper, so equal passes is not equal seconds).

Every run is ``tools/train.py`` in its own process (``--jobs`` at a time, each with
``--threads`` torch threads), writes its usual work dir (per-configuration evaluation
included) under ``--work-dir``, and is skipped when its ``per_config.json`` is already
there, so an interrupted study resumes where it stopped. The report (Markdown tables and
``method_study.png``) is written from the finished runs.

    python benchmarks/method_study.py                  # every run, 2 at a time
    python benchmarks/method_study.py --runs width_only independent_w0.25
    python benchmarks/method_study.py --report-only
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from common import DEMO_CONFIG, REPO, markdown_table

from mutualnet_mm.evaluation.results import pareto_front

BACKBONE_ONLY_CONFIG = osp.join(REPO, 'configs', 'demo',
                                'maskrcnn_mutual_r18_shapes_backbone-only.py')
COHORT_PASSES = 4  # the demo's num_subnets
STUDY_EPOCHS = 16
FROM_THE_START = dict(full_only_iters=0)
METRICS = ('coco/bbox_mAP', 'coco/segm_mAP')
INDEPENDENT_WIDTHS = (1.0, 0.5, 0.25)


@dataclass
class Run:
    """One training run of the study.

    Args:
        name: Work-dir name.
        method: The curve it belongs to.
        mutual: Keys merged into ``train_cfg.mutual`` of ``config``.
        overrides: Further config text merged over ``config``.
        epoch_factor: Epochs relative to the cohort methods' (equal passes).
        config: The config trained.
    """

    name: str
    method: str
    mutual: Optional[dict] = None
    overrides: str = ''
    epoch_factor: float = 1.0
    config: str = DEMO_CONFIG


def study_runs() -> List[Run]:
    runs = [
        Run('mutualnet', 'mutualnet', FROM_THE_START),
        Run('mutualnet_warmup', 'mutualnet_warmup', epoch_factor=24 / STUDY_EPOCHS),
        Run('mutualnet_distill', 'mutualnet_distill', dict(
            FROM_THE_START, distill=dict(_delete_=True, type='FeatureDistiller', module='neck',
                                         weight=1.0))),
        Run('width_only', 'width_only', dict(FROM_THE_START, scales=(1.0,))),
        Run('backbone_only', 'backbone_only', FROM_THE_START, config=BACKBONE_ONLY_CONFIG),
        Run('backbone_only_warmup', 'backbone_only_warmup', config=BACKBONE_ONLY_CONFIG,
            epoch_factor=24 / STUDY_EPOCHS),
    ]
    for width in INDEPENDENT_WIDTHS:
        runs.append(Run(
            f'independent_w{width}', 'independent',
            dict(FROM_THE_START, num_subnets=1, width_range=(width, width)),
            f'val_cfg = dict(widths=({width},))\ntest_cfg = dict(widths=({width},))',
            epoch_factor=COHORT_PASSES / len(INDEPENDENT_WIDTHS)))
    return runs


def schedule_options(epochs: int) -> List[str]:
    """Options that set the demo's epoch count everywhere it appears."""
    return [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'param_scheduler.1.end={epochs}', f'param_scheduler.1.T_max={epochs}',
            f'default_hooks.checkpoint.interval={epochs}']


def run_epochs(run: Run, epochs: int) -> int:
    return max(1, round(epochs * run.epoch_factor))


def write_config(run: Run, work_dir: str) -> str:
    """The run's config: ``run.config`` with its overrides, written into its work dir."""
    path = osp.join(work_dir, f'study_{run.name}.py')
    with open(path, 'w') as f:
        f.write(f'# method study run {run.name!r} ({run.method})\n_base_ = {run.config!r}\n')
        if run.mutual:
            f.write(f'train_cfg = dict(mutual={run.mutual!r})\n')
        f.write(run.overrides + '\n')
    return path


def command(run: Run, epochs: int, work_dir: str) -> List[str]:
    return [sys.executable, osp.join(REPO, 'tools', 'train.py'), write_config(run, work_dir),
            '--work-dir', work_dir, '--resume', '--cfg-options',
            *schedule_options(run_epochs(run, epochs))]


def finished(work_dir: str) -> bool:
    return osp.isfile(osp.join(work_dir, 'per_config.json'))


def train_all(runs: Sequence[Run], epochs: int, root: str, jobs: int, threads: int) -> None:
    """Train the unfinished runs, ``jobs`` at a time; a failed run is reported, not fatal."""
    pending = [run for run in runs if not finished(osp.join(root, run.name))]
    for run in runs:
        if run not in pending:
            print(f'[skip] {run.name}: finished earlier ({osp.join(root, run.name)})')
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    active: Dict[str, tuple] = {}
    failed = []
    total, done = len(pending), 0
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            work_dir = osp.join(root, run.name)
            os.makedirs(work_dir, exist_ok=True)
            log = open(osp.join(work_dir, 'study_train.log'), 'a')
            process = subprocess.Popen(command(run, epochs, work_dir), cwd=REPO, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
            active[run.name] = (process, log, time.time(), run)
            print(f'[start] {run.name}: {run_epochs(run, epochs)} epochs '
                  f'(log: {log.name})', flush=True)
        time.sleep(5)
        for name, (process, log, start, run) in list(active.items()):
            if process.poll() is None:
                continue
            log.close()
            del active[name]
            done += 1
            seconds = time.time() - start
            if process.returncode == 0 and finished(osp.join(root, name)):
                with open(osp.join(root, name, 'study_run.json'), 'w') as f:
                    json.dump(dict(epochs=run_epochs(run, epochs), wall_s=seconds,
                                   jobs=jobs, threads=threads), f)
                print(f'[done {done}/{total}] {name}: {seconds / 60:.1f} min', flush=True)
            else:
                failed.append(name)
                print(f'[FAILED {done}/{total}] {name}: exit {process.returncode}, see '
                      f'{log.name}', flush=True)
    if failed:
        print(f'failed runs: {", ".join(failed)}')


def load(root: str, runs: Sequence[Run]) -> Dict[str, List[dict]]:
    """``{method: records}``, each record tagged with its run and wall time."""
    by_method: Dict[str, List[dict]] = {}
    for run in runs:
        work_dir = osp.join(root, run.name)
        if not finished(work_dir):
            continue
        with open(osp.join(work_dir, 'per_config.json')) as f:
            records = json.load(f)['records']
        info_path = osp.join(work_dir, 'study_run.json')
        info = {}
        if osp.isfile(info_path):
            with open(info_path) as f:
                info = json.load(f)
        for record in records:
            by_method.setdefault(run.method, []).append(
                dict(record, run=run.name, epochs=info.get('epochs'),
                     wall_min=info.get('wall_s', float('nan')) / 60))
    return by_method


def report(by_method: Dict[str, List[dict]], out_dir: str) -> str:
    """Markdown tables (summary and per configuration) and the plot; returns the text."""
    bbox, segm = METRICS
    methods = list(by_method)
    summary = []
    for method in methods:
        records = by_method[method]
        runs = {r['run']: r for r in records}
        summary.append({
            'method': method,
            'runs': len(runs),
            'train wall (min)': sum(r['wall_min'] for r in runs.values()),
            'best bbox mAP': max(r[bbox] for r in records),
            'bbox mAP at min GFLOPs': min(records, key=lambda r: r['gflops'])[bbox],
            'GFLOPs range': f"{min(r['gflops'] for r in records):.3f}-"
                            f"{max(r['gflops'] for r in records):.3f}",
            'Pareto points': len(pareto_front(records, bbox)),
        })
    configurations = sorted({(r['width'], r['scale']) for rs in by_method.values()
                             for r in rs}, reverse=True)
    per_config = []
    for width, scale in configurations:
        row = {'width': width, 'scale': scale}
        for method in methods:
            match = [r for r in by_method[method]
                     if r['width'] == width and r['scale'] == scale]
            row[method] = (f'{match[0][bbox]:.3f} / {match[0][segm]:.3f} '
                           f'@ {match[0]["gflops"]:.3f}' if match else '')
        per_config.append(row)
    text = ('### Summary\n\n' + markdown_table(summary) +
            '\n\n### Per configuration: bbox mAP / segm mAP @ GFLOPs\n\n' +
            markdown_table(per_config) + '\n')
    plot(by_method, bbox, osp.join(out_dir, 'method_study.png'))
    with open(osp.join(out_dir, 'method_study.md'), 'w') as f:
        f.write(text)
    return text


def plot(by_method: Dict[str, List[dict]], metric: str, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, records in by_method.items():
        front = pareto_front(records, metric)
        line, = ax.plot([r['gflops'] for r in front], [r[metric] for r in front], '-o',
                        label=method, markersize=4)
        ax.scatter([r['gflops'] for r in records], [r[metric] for r in records],
                   color=line.get_color(), alpha=0.3, s=12)
    ax.set_xscale('log')
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
             if min(r['gflops'] for rs in by_method.values() for r in rs) / 2 <= t
             <= max(r['gflops'] for rs in by_method.values() for r in rs) * 2]
    ax.set_xticks(ticks, [f'{t:g}' for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel('GFLOPs (multiply-adds) per image')
    ax.set_ylabel(metric)
    ax.set_title('Demo Mask R-CNN, equal training passes (lines: Pareto fronts)')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(runs: Sequence[Run]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', nargs='+', choices=[r.name for r in runs],
                        help='train only these runs (default: all)')
    parser.add_argument('--epochs', type=int, default=STUDY_EPOCHS,
                        help="cohort methods' epochs (the warm-up runs scale theirs by 24/16 and "
                             "keep the demo config's full_only_iters)")
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'method_study'))
    parser.add_argument('--jobs', type=int, default=2, help='runs trained at once')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run')
    parser.add_argument('--report-only', action='store_true',
                        help='only write the report from the finished runs')
    return parser.parse_args()


def main(argv: Optional[Sequence[str]] = None) -> None:
    runs = study_runs()
    args = parse_args(runs)
    if args.jobs < 1 or args.threads < 1:
        raise SystemExit(f'--jobs and --threads must be >= 1, got {args.jobs}, {args.threads}')
    epochs = args.epochs
    os.makedirs(args.work_dir, exist_ok=True)
    if not args.report_only:
        selected = [r for r in runs if args.runs is None or r.name in args.runs]
        start = time.time()
        train_all(selected, epochs, args.work_dir, args.jobs, args.threads)
        print(f'training wall time: {(time.time() - start) / 60:.1f} min')
    by_method = load(args.work_dir, runs)
    if not by_method:
        raise SystemExit(f'no finished run under {args.work_dir}')
    print(report(by_method, args.work_dir))
    print(f'written: method_study.md, method_study.png in {args.work_dir}')


if __name__ == '__main__':
    main()
