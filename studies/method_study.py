"""Method study on the demo detection data, every method trained with the same budget.

Every run trains a demo detector (same data, recipe and seed) with only the compared
setting changed, then evaluates every (width, scale) with the stock per-configuration
loop. The ``quick`` and ``extended`` presets train the demo Mask R-CNN
(``configs/demo/maskrcnn_mutual_r18_shapes.py``) on the generated shapes, ``trees`` the
RetinaNet on real aerial photographs (``configs/demo/retinanet_mutual_r18_trees.py``):

``quick`` (default): the demo's recipe, shortened. Its first five runs (``warmup``,
``mutualnet``, the three ``independent`` ones) take about 13 minutes on 2 cores; each
further cohort run took 7-15 minutes here with 1-4 trainings sharing the 2 cores
(``--runs`` picks some). The full
network first trains alone for ``QUICK_WARMUP`` epochs (run ``warmup``); the cohort
methods then each continue from that checkpoint for ``QUICK_COHORT`` epochs, so they
differ only where they differ in the demo too:

- ``mutualnet``: the width + input-scale cohort (4 passes per iteration).
- ``width_only``: the US-Net sandwich rule, every pass at the full input scale.
- ``mutualnet_distill``: ``mutualnet`` plus in-place distillation of the neck features
  from the full configuration (``FeatureDistiller``).
- ``independent``: three networks trained alone from scratch at widths 1.0, 0.5 and
  0.25, with as many passes together as one cohort method (warm-up included).
- ``backbone_only``: the backbone slims, the neck and heads stay at full width (head
  width fixed at 1.0: the reference work's detectors).
- ``decoupled``: backbone width and head width (neck and heads) drawn independently in
  [0.25, 1], evaluated on every (width, head width, scale) of the grid.
- ``decoupled_floor``: ``decoupled`` with the head width drawn in [0.5, 1].
- ``decoupled_full_heads``: ``decoupled`` with one of the two middle configurations at
  full head width (``full_head_passes=1``): narrow backbones also train under the full
  heads, as backbone-only slimming trains them.
- ``decoupled_rpn_distill``: ``decoupled`` plus in-place distillation of the RPN's
  outputs from the full configuration (``RPNOutputDistiller``).

``extended`` (runs of 13-26 minutes each): the cohort from the first iteration
(``mutualnet``, ``mutualnet_distill``, ``width_only``, 16 epochs), ``independent`` at 21
epochs each, backbone-only slimming (``backbone_only``, ``backbone_only_warmup``), the
demo recipe (``mutualnet_warmup``: 12 epochs alone + 12 with the cohort) and decoupled
widths with the demo recipe (``decoupled_warmup``).

``trees``: the tree-crown RetinaNet's own recipe (``TREES_EPOCHS``, the full network
alone for the first half; shorter schedules left every method near zero mAP):
``mutualnet`` (the config as it is, 11-14 minutes on 2 cores), ``backbone_only`` (the same
with the neck and head at full width) and ``independent`` (widths 1.0, 0.5 and 0.25
alone, as many passes together). Ranked by bbox mAP, with AP50 beside it (boxes only: no
segm mAP). Run it with ``--jobs 1``: one training at a time on 2 cores.
``rtmdet``: the RTMDet demo's own recipe (``RTMDET_EPOCHS``, RTMDet-s with RTMDet-tiny
inside at width 0.75 and depth 0.5) against the stock RTMDet-s and RTMDet-tiny trained
alone, as many passes together; boxes only.

Budget: forward-backward passes of a batch; passes at smaller widths and scales are
cheaper, so the measured wall time of every run is reported next to it.

Every run is ``tools/train.py`` in its own process (``--jobs`` at a time, each with
``--threads`` torch threads; a run that continues another starts when that one has
finished), writes its usual work dir under ``--work-dir``/seed<S> and is skipped when its
``per_config.json`` is already there, so an interrupted study resumes where it stopped.
The report (Markdown tables and ``method_study.png``) is written from the finished runs,
per seed and, with several seeds, as the mean and range over them.

    python studies/method_study.py                        # the quick preset, seed 0
    python studies/method_study.py --seeds 1 2            # two more seeds
    python studies/method_study.py --report-only --seeds 0 1 2
    python studies/method_study.py --preset extended --runs width_only
    python studies/method_study.py --preset trees --jobs 1 --seeds 0 1 2
    python studies/method_study.py --preset rtmdet --seeds 0 1 2
"""
import argparse
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'benchmarks'))
from common import DEMO_CONFIG, REPO, generated_data, markdown_table  # noqa: E402

from mutualnet_mm.datasets.trees import write_trees_coco  # noqa: E402
from mutualnet_mm.evaluation.results import pareto_front  # noqa: E402

DEMO_DATA = dict(root=osp.join(REPO, 'data', 'coco_shapes'), size=128, num_train=400,
                 num_val=100)  # as `make demo` writes it
TREES_CONFIG = osp.join(REPO, 'configs', 'demo', 'retinanet_mutual_r18_trees.py')
TREES_DATA = osp.join(REPO, 'data', 'trees')  # as `make trees` writes it
COHORT_PASSES = 4  # the demo's num_subnets
QUICK_WARMUP = 6  # epochs of the full network alone, shared by the cohort methods
QUICK_COHORT = 5  # epochs with the cohort after it
EXTENDED_EPOCHS = 16  # the cohort-from-the-start runs of the extended preset
DEMO_EPOCHS = 24
TREES_EPOCHS = 36  # the tree-crown config's schedule
RTMDET_CONFIG = osp.join(REPO, 'configs', 'demo', 'rtmdet_mutual_shapes.py')
RTMDET_EPOCHS = 16  # the RTMDet demo config's schedule
#: The RTMDet demo's family points ``(name, width, depth)``: RTMDet-s and RTMDet-tiny.
RTMDET_SIZES = (('s', 1.0, 1.0), ('tiny', 0.75, 0.5))
NO_WARMUP = dict(full_only_fraction=0.0)  # the cohort from the run's own first iteration
DISTILL = dict(distill=dict(_delete_=True, type='FeatureDistiller', module='neck',
                            weight=1.0))
RPN_DISTILL = dict(distill=dict(_delete_=True, type='RPNOutputDistiller', weight=1.0))
#: The metric that ranks (the Pareto fronts, the goal checks) and, for each preset, the
#: one shown beside it.
METRICS = ('coco/bbox_mAP', 'coco/segm_mAP')
BOX_METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50')
INDEPENDENT_WIDTHS = (1.0, 0.5, 0.25)
#: Costs of one configuration differ a little between runs (the RoI heads' cost follows
#: the number of proposals): a budget check allows this much above the budget.
COST_TOLERANCE = 0.05
#: The methods whose goal checks the report shows (the candidates for the default).
CANDIDATES = ('decoupled', 'decoupled_full_heads', 'decoupled_floor', 'decoupled_rpn_distill',
              'decoupled_warmup', 'mutualnet')
#: Neck and heads at full width whatever the backbone's (the reference detectors).
BACKBONE_ONLY = dict(head_width_range=(1.0, 1.0))
DECOUPLED = dict(head_width_range=(0.25, 1.0))
DECOUPLED_FLOOR = dict(head_width_range=(0.5, 1.0))
DECOUPLED_FULL_HEADS = dict(head_width_range=(0.25, 1.0), full_head_passes=1)


def head_grid(*head_widths: float) -> dict:
    """The evaluation grid: every width with each of ``head_widths``."""
    return dict(head_widths=head_widths)


@dataclass
class Run:
    """One training run of the study.

    Args:
        name: Work-dir name.
        method: The curve it belongs to.
        epochs: Epochs it trains to (``train_cfg.max_epochs``), counting those of the
            run it continues.
        schedule: Length in epochs of the cosine learning-rate schedule (default
            ``epochs``); a run that others continue keeps theirs.
        mutual: Keys merged into ``train_cfg.mutual`` of ``config``; without
            ``head_width_range`` the neck and heads follow the backbone's width.
        grid: Keys merged into ``val_cfg`` and ``test_cfg`` (the evaluated grid);
            without ``head_widths``, no head-width dimension.
        config: The config trained.
        after: The run whose last checkpoint this one resumes from (weights, optimizer,
            schedule and iteration count).
    """

    name: str
    method: str
    epochs: int
    schedule: Optional[int] = None
    mutual: Optional[dict] = None
    grid: Optional[dict] = None
    config: str = DEMO_CONFIG
    after: Optional[str] = None


def independent_runs(epochs: int, config: str = DEMO_CONFIG) -> List[Run]:
    """One network per width, trained alone from scratch, evaluated at its width only."""
    return [Run(f'independent_w{width}', 'independent', epochs,
                mutual=dict(NO_WARMUP, num_subnets=1, width_range=(width, width)),
                grid=dict(widths=(width,)), config=config)
            for width in INDEPENDENT_WIDTHS]


def quick_runs() -> List[Run]:
    """The demo recipe shortened, with the warm-up shared by the cohort methods."""
    total = QUICK_WARMUP + QUICK_COHORT
    passes = QUICK_WARMUP + COHORT_PASSES * QUICK_COHORT
    after_warmup = dict(epochs=total, after='warmup')
    independent_w1, *independent_smaller = independent_runs(
        round(passes / len(INDEPENDENT_WIDTHS)))
    # In the order they start: the long cohort runs as soon as the warm-up is done, the
    # short independent ones fill the other job.
    return [
        Run('warmup', 'warmup', QUICK_WARMUP, schedule=total,
            mutual=dict(NO_WARMUP, num_subnets=1, width_range=(1.0, 1.0)),
            grid=dict(widths=(1.0,), scales=(1.0,))),
        independent_w1,
        Run('mutualnet', 'mutualnet', mutual=NO_WARMUP, **after_warmup),
        Run('width_only', 'width_only', mutual=dict(NO_WARMUP, scales=(1.0,)),
            **after_warmup),
        Run('backbone_only', 'backbone_only', mutual=dict(NO_WARMUP, **BACKBONE_ONLY),
            grid=head_grid(1.0), **after_warmup),
        Run('decoupled', 'decoupled', mutual=dict(NO_WARMUP, **DECOUPLED),
            grid=head_grid(1.0, 0.5, 0.25), **after_warmup),
        Run('decoupled_floor', 'decoupled_floor', mutual=dict(NO_WARMUP, **DECOUPLED_FLOOR),
            grid=head_grid(1.0, 0.75, 0.5), **after_warmup),
        Run('decoupled_full_heads', 'decoupled_full_heads',
            mutual=dict(NO_WARMUP, **DECOUPLED_FULL_HEADS), grid=head_grid(1.0, 0.5, 0.25),
            **after_warmup),
        Run('decoupled_rpn_distill', 'decoupled_rpn_distill',
            mutual=dict(NO_WARMUP, **DECOUPLED, **RPN_DISTILL),
            grid=head_grid(1.0, 0.5, 0.25), **after_warmup),
        Run('mutualnet_distill', 'mutualnet_distill', mutual=dict(NO_WARMUP, **DISTILL),
            **after_warmup),
        *independent_smaller,
    ]


def extended_runs() -> List[Run]:
    """Longer runs, the cohort from the start, plus backbone-only slimming and the demo."""
    return [
        Run('mutualnet', 'mutualnet', EXTENDED_EPOCHS, mutual=NO_WARMUP),
        Run('mutualnet_warmup', 'mutualnet_warmup', DEMO_EPOCHS),
        Run('mutualnet_distill', 'mutualnet_distill', EXTENDED_EPOCHS,
            mutual=dict(NO_WARMUP, **DISTILL)),
        Run('width_only', 'width_only', EXTENDED_EPOCHS,
            mutual=dict(NO_WARMUP, scales=(1.0,))),
        Run('backbone_only', 'backbone_only', EXTENDED_EPOCHS,
            mutual=dict(NO_WARMUP, **BACKBONE_ONLY), grid=head_grid(1.0)),
        Run('backbone_only_warmup', 'backbone_only_warmup', DEMO_EPOCHS,
            mutual=BACKBONE_ONLY, grid=head_grid(1.0)),
        Run('decoupled_warmup', 'decoupled_warmup', DEMO_EPOCHS, mutual=DECOUPLED,
            grid=head_grid(1.0, 0.5, 0.25)),
        *independent_runs(round(EXTENDED_EPOCHS * COHORT_PASSES / len(INDEPENDENT_WIDTHS))),
    ]


def half_warmup_passes(epochs: int) -> int:
    """Epoch-passes of a recipe that trains the full network alone for the first half of
    ``epochs`` and the cohort after it."""
    warmup = epochs // 2
    return warmup + COHORT_PASSES * (epochs - warmup)


def trees_runs() -> List[Run]:
    """The tree-crown RetinaNet's recipe (warm-up: the first half), the same with
    backbone-only slimming, and independent networks with as many passes together."""
    passes = half_warmup_passes(TREES_EPOCHS)
    return [
        Run('mutualnet', 'mutualnet', TREES_EPOCHS, config=TREES_CONFIG),
        *independent_runs(round(passes / len(INDEPENDENT_WIDTHS)), TREES_CONFIG),
        Run('backbone_only', 'backbone_only', TREES_EPOCHS, mutual=BACKBONE_ONLY,
            grid=head_grid(1.0), config=TREES_CONFIG),
    ]


def rtmdet_runs() -> List[Run]:
    """The RTMDet demo's recipe (warm-up: the first half) against RTMDet-s and RTMDet-tiny
    trained alone, with as many passes together."""
    alone = round(half_warmup_passes(RTMDET_EPOCHS) / len(RTMDET_SIZES))
    return [
        Run('mutualnet', 'mutualnet', RTMDET_EPOCHS, config=RTMDET_CONFIG),
        *(Run(f'independent_{size}', 'independent', alone,
              mutual=dict(NO_WARMUP, num_subnets=1, width_range=(width, width),
                          depth_range=(depth, depth)),
              grid=dict(widths=(width,), depths=(depth,)), config=RTMDET_CONFIG)
          for size, width, depth in RTMDET_SIZES),
    ]


def shapes_data() -> None:
    generated_data(**DEMO_DATA)


def trees_data() -> None:
    write_trees_coco(TREES_DATA)


@dataclass(frozen=True)
class Preset:
    """A study: its runs, the data they need, the two metrics shown and the plot title."""

    runs: Callable[[], List[Run]]
    make_data: Callable[[], None]
    metrics: Tuple[str, str]
    title: str


PRESETS: Dict[str, Preset] = dict(
    quick=Preset(quick_runs, shapes_data, METRICS, 'Demo Mask R-CNN, quick method study'),
    extended=Preset(extended_runs, shapes_data, METRICS,
                    'Demo Mask R-CNN, extended method study'),
    trees=Preset(trees_runs, trees_data, BOX_METRICS,
                 'Tree-crown RetinaNet (real aerial photographs), method study'),
    rtmdet=Preset(rtmdet_runs, shapes_data, BOX_METRICS,
                  'Demo RTMDet-s with RTMDet-tiny inside, against each trained alone'))


def schedule_options(run: Run) -> List[str]:
    """Options that set the run's epochs and schedule everywhere the demo config has them."""
    schedule = run.schedule or run.epochs
    return [f'train_cfg.max_epochs={run.epochs}', f'train_cfg.val_interval={run.epochs}',
            f'param_scheduler.1.end={schedule}', f'param_scheduler.1.T_max={schedule}',
            f'default_hooks.checkpoint.interval={run.epochs}']


def write_config(run: Run, work_dir: str) -> str:
    """The run's config: ``run.config`` with its settings, written into its work dir."""
    path = osp.join(work_dir, f'study_{run.name}.py')
    with open(path, 'w') as f:
        f.write(f'# method study run {run.name!r} ({run.method})\n_base_ = {run.config!r}\n')
        mutual = dict(dict(head_width_range=None), **(run.mutual or {}))
        grid = dict(dict(head_widths=None), **(run.grid or {}))
        f.write(f'train_cfg = dict(mutual={mutual!r})\n'
                f'val_cfg = {grid!r}\ntest_cfg = {grid!r}\n')
    return path


def last_checkpoint(run: Run, root: str) -> str:
    return osp.join(root, run.name, f'epoch_{run.epochs}.pth')


def command(run: Run, runs: Dict[str, Run], root: str, seed: int) -> List[str]:
    work_dir = osp.join(root, run.name)
    resume = ['--resume', last_checkpoint(runs[run.after], root)] if run.after else []
    return [sys.executable, osp.join(REPO, 'tools', 'train.py'), write_config(run, work_dir),
            '--work-dir', work_dir, *resume, '--cfg-options', f'randomness.seed={seed}',
            *schedule_options(run)]


def finished(work_dir: str) -> bool:
    return osp.isfile(osp.join(work_dir, 'per_config.json'))


def train_all(runs: Sequence[Run], selected: Sequence[Run], root: str, jobs: int,
              threads: int, seed: int) -> None:
    """Train the unfinished ``selected`` runs into ``root``, ``jobs`` at a time, each when
    the run it continues has finished; a failed run is reported, not fatal."""
    by_name = {run.name: run for run in runs}
    pending = [run for run in selected if not finished(osp.join(root, run.name))]
    for run in selected:
        if run not in pending:
            print(f'[skip] {run.name}: finished earlier ({osp.join(root, run.name)})')
    missing = sorted({run.after for run in pending if run.after} -
                     {run.name for run in pending} -
                     {name for name in by_name if finished(osp.join(root, name))})
    if missing:
        raise SystemExit(f'runs {[r.name for r in pending if r.after in missing]} continue '
                         f'{missing}, which is neither finished nor selected; add it to --runs')
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    active: Dict[str, tuple] = {}
    failed: List[str] = []
    total, done = len(pending), 0
    try:
        while pending or active:
            ready = [run for run in pending
                     if run.after is None or finished(osp.join(root, run.after))]
            for run in ready[:max(0, jobs - len(active))]:
                pending.remove(run)
                work_dir = osp.join(root, run.name)
                os.makedirs(work_dir, exist_ok=True)
                log = open(osp.join(work_dir, 'study_train.log'), 'a')
                process = subprocess.Popen(command(run, by_name, root, seed), cwd=REPO, env=env,
                                           stdout=log, stderr=subprocess.STDOUT)
                active[run.name] = (process, log, time.time(), run)
                origin = (f' from {run.after} (epoch {by_name[run.after].epochs})'
                          if run.after else '')
                print(f'[start] {run.name}: to epoch {run.epochs}{origin} (log: {log.name})',
                      flush=True)
            if not active:  # what is left continues a run that failed
                failed += [run.name for run in pending]
                break
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
                        json.dump(dict(epochs=run.epochs, after=run.after, seed=seed,
                                       wall_s=seconds, jobs=jobs, threads=threads), f)
                    print(f'[done {done}/{total}] {name}: {seconds / 60:.1f} min', flush=True)
                else:
                    failed.append(name)
                    print(f'[FAILED {done}/{total}] {name}: exit {process.returncode}, see '
                          f'{log.name}', flush=True)
    finally:  # interrupted (Ctrl-C, SIGTERM, an error): stop the trainings it started
        for name, (process, log, _, _) in active.items():
            if process.poll() is None:
                process.terminate()
                process.wait()
                print(f'[stopped] {name}: unfinished, trains again next time', flush=True)
            log.close()
    if failed:
        print(f'failed or not started: {", ".join(failed)}')


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
                dict(record, run=run.name, epochs=run.epochs, after=run.after,
                     wall_min=info.get('wall_s', float('nan')) / 60))
    return by_method


def summary(by_method: Dict[str, List[dict]]) -> List[dict]:
    """One row per method: its runs, wall time, accuracy range and cost range."""
    bbox = METRICS[0]
    rows = []
    for method, records in by_method.items():
        runs = {r['run']: r for r in records}
        rows.append({
            'method': method,
            'runs': len(runs),
            'epochs': '/'.join(sorted({str(r['epochs']) for r in records})),
            'continues': ', '.join(sorted({r['after'] for r in records if r['after']})),
            'train wall (min)': sum(r['wall_min'] for r in runs.values()),
            'best bbox mAP': max(r[bbox] for r in records),
            'bbox mAP at min GFLOPs': min(records, key=lambda r: r['gflops'])[bbox],
            'GFLOPs range': f"{min(r['gflops'] for r in records):.3f}-"
                            f"{max(r['gflops'] for r in records):.3f}",
            'Pareto points': len(pareto_front(records, bbox)),
        })
    return rows


def config_key(record: dict) -> tuple:
    """``(width, depth, head width, scale)``; a coupled configuration's head width is its
    width (the same network as the decoupled one with both widths equal)."""
    head = record.get('head_width')
    return (record['width'], record.get('depth', 1.0),
            record['width'] if head is None else head, record['scale'])


def per_config(by_method: Dict[str, List[dict]], cell: Callable[[dict], str]) -> List[dict]:
    """One row per (width, depth, head width, scale), one ``cell(record)`` per method
    that evaluated it; no depth column where every depth is 1, no head-width column where
    every head follows its width."""
    configurations = sorted({config_key(r) for rs in by_method.values() for r in rs},
                            reverse=True)
    with_depth = any(key[1] != 1.0 for key in configurations)
    with_head = any(key[2] != key[0] for key in configurations)
    rows = []
    for key in configurations:
        row = dict(zip(('width', 'depth', 'head width', 'scale'), key))
        if not with_depth:
            del row['depth']
        if not with_head:
            del row['head width']
        for method, records in by_method.items():
            match = [r for r in records if config_key(r) == key]
            row[method] = cell(match[0]) if match else ''
        rows.append(row)
    return rows


def best_within(records: Sequence[dict], budget: float) -> Optional[float]:
    """The query table's answer: the best bbox mAP among ``records`` costing at most
    ``budget`` GFLOPs (``COST_TOLERANCE`` above it allowed), or None."""
    fitting = [r[METRICS[0]] for r in records if r['gflops'] <= budget * (1 + COST_TOLERANCE)]
    return max(fitting) if fitting else None


def goal_checks(by_method: Dict[str, List[dict]], candidate: str) -> List[dict]:
    """Whether ``candidate`` is as accurate as every other method: at each point of the
    other's Pareto front (every configuration for ``independent``) that the candidate's
    cost range reaches, is the candidate's best bbox mAP within that point's cost at least
    the point's?"""
    bbox = METRICS[0]
    ours = by_method[candidate]
    lowest = min(r['gflops'] for r in ours) / (1 + COST_TOLERANCE)
    front = pareto_front(ours, bbox)
    rows = [{'against': f'{candidate}: its own front', 'points': len(front),
             'met': '', 'worst shortfall (bbox mAP)': '',
             'cost span': f"{front[-1]['gflops'] / front[0]['gflops']:.1f}x "
                          f"({front[0]['gflops']:.3f}-{front[-1]['gflops']:.3f})"}]
    for method, records in by_method.items():
        if method in (candidate, 'warmup'):
            continue
        points = records if method == 'independent' else pareto_front(records, bbox)
        points = [p for p in points if p['gflops'] >= lowest]
        shortfalls = [p[bbox] - best_within(ours, p['gflops']) for p in points]
        rows.append({'against': method, 'points': len(points),
                     'met': sum(s <= 0 for s in shortfalls),
                     'worst shortfall (bbox mAP)': f'{max(shortfalls + [0.0]):.3f}',
                     'cost span': ''})
    return rows


def write_report(text: str, by_method: Dict[str, List[dict]], out_dir: str,
                 title: str) -> str:
    plot(by_method, METRICS[0], osp.join(out_dir, 'method_study.png'), title)
    with open(osp.join(out_dir, 'method_study.md'), 'w') as f:
        f.write(text)
    return text


def metric_name(metric: str) -> str:
    """``coco/bbox_mAP_50`` -> ``bbox mAP_50``."""
    return metric.rpartition('/')[2].replace('_', ' ', 1)


def report(by_method: Dict[str, List[dict]], out_dir: str, title: str,
           metrics: Tuple[str, str] = METRICS) -> str:
    """One seed's tables (summary, per configuration) and plot; returns the text."""
    first, second = metrics
    table = per_config(by_method, lambda r: f'{r[first]:.3f} / {r[second]:.3f} '
                                            f'@ {r["gflops"]:.3f}')
    text = ('### Summary\n\n' + markdown_table(summary(by_method)) +
            goal_sections(by_method) +
            f'\n\n### Per configuration: {metric_name(first)} / {metric_name(second)} '
            '@ GFLOPs\n\n' +
            markdown_table(table) + '\n')
    return write_report(text, by_method, out_dir, title)


def goal_sections(by_method: Dict[str, List[dict]]) -> str:
    """The goal checks of every candidate the runs include, as Markdown."""
    return ''.join(
        f'\n\n### Goal checks: `{candidate}` (budgets within {COST_TOLERANCE:.0%})\n\n' +
        markdown_table(goal_checks(by_method, candidate))
        for candidate in CANDIDATES if candidate in by_method)


def mean_over_seeds(by_seed: Dict[int, Dict[str, List[dict]]],
                    metrics: Tuple[str, str] = METRICS) -> Dict[str, List[dict]]:
    """Per method and configuration, the mean record over the seeds that have it, with
    the lowest and highest bbox mAP (``bbox_low``, ``bbox_high``) and the seed count."""
    groups: Dict[str, Dict[tuple, List[dict]]] = {}
    for by_method in by_seed.values():
        for method, records in by_method.items():
            for record in records:
                key = config_key(record)
                groups.setdefault(method, {}).setdefault(key, []).append(record)
    means: Dict[str, List[dict]] = {}
    for method, by_config in groups.items():
        for records in by_config.values():
            mean = dict(records[0])
            for key in ('gflops', 'wall_min', *metrics):
                mean[key] = sum(r[key] for r in records) / len(records)
            values = [r[METRICS[0]] for r in records]
            mean.update(bbox_low=min(values), bbox_high=max(values), seeds=len(records))
            means.setdefault(method, []).append(mean)
    return means


def wins(by_seed: Dict[int, Dict[str, List[dict]]], reference: str = 'mutualnet') -> List[dict]:
    """Per other method and seed: at how many of the configurations both evaluated
    ``reference`` has the higher bbox mAP."""
    bbox = METRICS[0]
    methods = [m for m in dict.fromkeys(m for b in by_seed.values() for m in b)
               if m != reference]
    rows = []
    for method in methods:
        row = {f'{reference} better than': method}
        for seed, by_method in by_seed.items():
            if reference not in by_method or method not in by_method:
                row[f'seed {seed}'] = ''
                continue
            ours = {config_key(r): r[bbox] for r in by_method[reference]}
            theirs = {config_key(r): r[bbox] for r in by_method[method]}
            shared = ours.keys() & theirs.keys()
            row[f'seed {seed}'] = f'{sum(ours[k] > theirs[k] for k in shared)}/{len(shared)}'
        rows.append(row)
    return rows


def report_over_seeds(by_seed: Dict[int, Dict[str, List[dict]]], out_dir: str,
                      title: str, metrics: Tuple[str, str] = METRICS) -> str:
    """Tables and plot of the mean over seeds, with each seed's win counts."""
    means = mean_over_seeds(by_seed, metrics)
    first, second = metrics
    table = per_config(means, lambda r: f'{r[first]:.3f} ({r["bbox_low"]:.3f}-'
                                        f'{r["bbox_high"]:.3f}) / {r[second]:.3f}')
    seeds = ', '.join(str(seed) for seed in by_seed)
    text = (f'Seeds {seeds}: means over the seeds (wall times: mean per seed).\n\n'
            '### Summary\n\n' + markdown_table(summary(means)) + goal_sections(means) +
            f'\n\n### Per configuration: {metric_name(first)}, mean (lowest-highest) / '
            f'{metric_name(second)}, mean\n\n' +
            markdown_table(table) + '\n\n### Configurations where `mutualnet` is more '
            'accurate (bbox mAP), per seed\n\n' + markdown_table(wins(by_seed)) + '\n')
    return write_report(text, means, out_dir, f'{title}, mean of seeds {seeds}')


def plot(by_method: Dict[str, List[dict]], metric: str, path: str, title: str) -> None:
    """mAP against GFLOPs (log), every configuration and each method's Pareto front;
    the lowest-highest range over seeds as a bar where the records have one."""
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
        if 'bbox_low' in records[0]:
            ax.vlines([r['gflops'] for r in records], [r['bbox_low'] for r in records],
                      [r['bbox_high'] for r in records], color=line.get_color(), alpha=0.3)
    ax.set_xscale('log')
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
             if min(r['gflops'] for rs in by_method.values() for r in rs) / 2 <= t
             <= max(r['gflops'] for rs in by_method.values() for r in rs) * 2]
    ax.set_xticks(ticks, [f'{t:g}' for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel('GFLOPs (multiply-adds) per image')
    ax.set_ylabel(metric)
    ax.set_title(f'{title}\n(equal training passes; lines: Pareto fronts)', fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='quick',
                        help='which study (see the module docstring)')
    parser.add_argument('--runs', nargs='+', metavar='RUN',
                        help='train only these runs of the preset (default: all)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0],
                        help='random seeds (initialisation, data order, cohorts); each seed '
                             'trains every run, one seed after the other, and with several '
                             'the report gives the mean and range over them')
    parser.add_argument('--work-dir', help='default: work_dirs/method_study_<preset>; '
                                           'one folder seed<S> per seed in it')
    parser.add_argument('--jobs', type=int, default=2, help='runs trained at once')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run')
    parser.add_argument('--report-only', action='store_true',
                        help='only write the report from the finished runs')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the trainings started are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.jobs < 1 or args.threads < 1:
        raise SystemExit(f'--jobs and --threads must be >= 1, got {args.jobs}, {args.threads}')
    preset = PRESETS[args.preset]
    runs = preset.runs()
    unknown = sorted(set(args.runs or ()) - {run.name for run in runs})
    if unknown:
        raise SystemExit(f'unknown runs {unknown} for --preset {args.preset}; its runs: '
                         f'{[run.name for run in runs]}')
    work_dir = args.work_dir or osp.join(REPO, 'work_dirs', f'method_study_{args.preset}')
    seeds = list(dict.fromkeys(args.seeds))
    if not args.report_only:
        preset.make_data()
        selected = [run for run in runs if args.runs is None or run.name in args.runs]
        for seed in seeds:
            start = time.time()
            print(f'seed {seed}:', flush=True)
            train_all(runs, selected, osp.join(work_dir, f'seed{seed}'), args.jobs,
                      args.threads, seed)
            print(f'seed {seed}: training wall time {(time.time() - start) / 60:.1f} min')
    title = preset.title
    by_seed = {}
    for seed in seeds:
        seed_dir = osp.join(work_dir, f'seed{seed}')
        by_method = load(seed_dir, runs)
        if by_method:
            by_seed[seed] = by_method
            text = report(by_method, seed_dir, f'{title}, seed {seed}', preset.metrics)
            print(f'written: method_study.md, method_study.png in {seed_dir}')
    if not by_seed:
        raise SystemExit(f'no finished run under {work_dir} for seeds {seeds}')
    if len(by_seed) > 1:
        text = report_over_seeds(by_seed, work_dir, title, preset.metrics)
        print(f'written: method_study.md, method_study.png in {work_dir}')
    print(text)


if __name__ == '__main__':
    main()
