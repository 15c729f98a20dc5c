"""Shared pieces of the benchmarks: a detector on generated data, interleaved timing, tables.

Every benchmark builds its detector from a config (by default the CPU demo Mask R-CNN),
feeds it the generated shapes data (:func:`generate_coco_shapes`, written to a temporary
folder), times the things it compares in interleaved rounds (every round runs every side,
the sides of one comparison next to each other, in a new seeded random order: a change of
machine load hits every side alike) and prints medians, paired ratios and the machine as
Markdown tables.
"""
import argparse
import atexit
import contextlib
import copy
import io
import os
import os.path as osp
import platform
import random
import shutil
import site
import statistics
import sys
import sysconfig
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, REPO)

import mutualnet_mm  # noqa: E402,F401  (registers the slimmable modules and the engine)
from mutualnet_mm.datasets import generate_coco_shapes  # noqa: E402
from mutualnet_mm.datasets.coco_shapes import COCO_SHAPES_CLASSES  # noqa: E402

DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'maskrcnn_mutual_r18_shapes.py')
_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


# ------------------------------------------------------------------------- the model
def generated_data(size: Union[int, Tuple[int, int]], num_train: int, num_val: int = 2,
                   root: Optional[str] = None) -> str:
    """Write the shapes data (``size`` px images, or ``(height, width)``); return its folder.

    Without ``root`` the data goes to a temporary folder removed when the process exits.
    """
    if root is None:
        root = tempfile.mkdtemp(prefix='mutualnet_bench_')
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    generate_coco_shapes(root, num_train=num_train, num_val=num_val, image_size=size)
    return root


def config_on_generated_data(config: str, data_root: str, size: int,
                             batch_size: int) -> Config:
    """``config`` reading the shapes data at ``data_root``: ``size`` px, no flip, no workers.

    Every dataloader reads the training split (a fixed batch for every side of a
    comparison), resized to ``size`` (keep ratio), in a fixed order.
    """
    cfg = Config.fromfile(config)
    for key in _LOADERS:
        if cfg.get(key) is None:
            continue
        loader = cfg[key]
        loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False))
        loader.pop('batch_sampler', None)
        dataset = loader.dataset
        dataset.update(data_root=data_root, ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='train/'),
                       metainfo=dict(classes=COCO_SHAPES_CLASSES))
        for transform in dataset.pipeline:
            kind = transform.type.rpartition('.')[2]
            if kind == 'Resize':
                transform.update(scale=(size, size), keep_ratio=True)
            elif kind == 'RandomFlip':
                transform.prob = 0.0
    cfg.work_dir = osp.join(data_root, 'work_dir')
    return cfg


def scope_of(cfg: Config) -> str:
    """The registry scope the config's models are built in."""
    return cfg.get('default_scope') or 'mmdet'


def build_model(cfg: Config, model_cfg: Optional[dict] = None, seed: int = 0) -> torch.nn.Module:
    """Build ``model_cfg`` (default ``cfg.model``) in the config's scope, seeded."""
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope_of(cfg)):
        return MODELS.build(ConfigDict(copy.deepcopy(
            model_cfg if model_cfg is not None else cfg.model)))


def keep_every_detection(cfg: Config) -> None:
    """Set the box head's score threshold to 0: it then keeps ``max_per_img`` detections
    whatever the (random) weights score, so the mask head and the post-processing do the
    same amount of work on every network compared."""
    cfg.model.test_cfg.rcnn.score_thr = 0.0


def describe(model: torch.nn.Module) -> str:
    """Which parts of ``model`` slim, and its parameter count."""
    from mutualnet_mm.ops import slimmable_modules
    parts = [name for name, _ in slimmable_modules(model)]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return (f'model: {type(model).__name__}, {params:.2f} M parameters; slimmable parts: '
            + (', '.join(parts) or 'none'))


def first_batch(cfg: Config, loader: str = 'train_dataloader') -> dict:
    """The first batch of one of the config's dataloaders (unprocessed, as a loop gets it)."""
    with DefaultScope.overwrite_default_scope(scope_of(cfg)), \
            contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        return next(iter(Runner.build_dataloader(copy.deepcopy(cfg[loader]), seed=0)))


def add_model_args(parser: argparse.ArgumentParser, size: int, batch_size: int,
                   repeats: int) -> None:
    """The arguments every benchmark of the demo detector takes."""
    parser.add_argument('--config', default=DEMO_CONFIG,
                        help='detector config (default: the CPU demo Mask R-CNN)')
    parser.add_argument('--size', type=int, default=size,
                        help='image size (px; the long side with --height)')
    parser.add_argument('--height', type=int, default=None,
                        help='generate images of HEIGHT x SIZE instead of square ones '
                             '(e.g. --height 800 --size 1216: a COCO image after the '
                             'stock 1333x800 resize)')
    parser.add_argument('--batch-size', type=int, default=batch_size)
    parser.add_argument('--repeats', type=int, default=repeats,
                        help='timed rounds (each runs every side once)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--data-root', default=None,
                        help='where to generate the data (default: a temporary folder)')
    add_threads_arg(parser)


def add_grid_args(parser: argparse.ArgumentParser, scales: bool = True) -> None:
    """``--widths`` (and ``--scales``): the configurations measured, the demo's grid by
    default."""
    parser.add_argument('--widths', type=float, nargs='+', default=[1.0, 0.75, 0.5, 0.25])
    if scales:
        parser.add_argument('--scales', type=float, nargs='+', default=[1.0, 0.75, 0.5])


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--device', default='cpu',
                        help="where the models run: 'cpu' or 'cuda' (times synchronized)")


def device_clock(device: str) -> Callable[[], float]:
    """``time.perf_counter`` that first waits for the work queued on ``device`` (a GPU)."""
    if torch.device(device).type != 'cuda':
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


def print_device(device: str) -> None:
    if torch.device(device).type == 'cuda':
        print(f'device: {torch.cuda.get_device_name(device)}', flush=True)


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--threads', type=int, default=None,
                        help="torch's intra-op threads (default: torch's own choice)")


# -------------------------------------------------------------------------- timing
@dataclass
class Case:
    """One side of a comparison: ``run`` is timed, ``setup`` (if any) runs untimed before."""

    name: str
    run: Callable[[], object]
    setup: Optional[Callable[[], object]] = None


def time_interleaved(cases: Sequence[Case], repeats: int, warmup: int = 1,
                     clock: Callable[[], float] = time.perf_counter, block: int = 1,
                     seed: int = 0) -> Dict[str, List[float]]:
    """Wall times (seconds) of each case, the cases taking turns round after round.

    The cases come in blocks of ``block`` consecutive ones (the sides of one
    comparison). Every round runs the blocks in a new random order and the cases of each
    block in a new random order (seeded): the sides of a comparison run next to each
    other, under the same load, and none always runs first, last or right after a given
    case, which would leave the caches and the allocator warm for it every time.
    (Reversing every other round instead runs the first and the last case twice in a
    row at each round boundary.)

    Args:
        cases: The sides compared, ``block`` by ``block``.
        repeats: Timed rounds; each runs every case once.
        warmup: Untimed rounds first (lazy initialization, allocator, caches).
        clock: The timer (:func:`device_clock` for work on a GPU).
        block: How many consecutive cases run together.
        seed: Seed of the orders.

    Returns:
        ``{case name: [seconds per round]}``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}')
    if block < 1 or len(cases) % block:
        raise ValueError(f'{len(cases)} cases do not split into blocks of {block}')
    times: Dict[str, List[float]] = {case.name: [] for case in cases}
    blocks = [list(cases[i:i + block]) for i in range(0, len(cases), block)]
    shuffle = random.Random(seed).shuffle
    for round_index in range(warmup + repeats):
        shuffle(blocks)
        for sides in blocks:
            shuffle(sides)
            for case in sides:
                if case.setup is not None:
                    case.setup()
                start = clock()
                case.run()
                elapsed = clock() - start
                if round_index >= warmup:
                    times[case.name].append(elapsed)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median over rounds of ``numerator / denominator`` timed in the same round.

    Two sides timed in one round share its load, so the per-round ratio cancels what
    drifts between rounds, where a ratio of the two medians does not.
    """
    if len(numerator) != len(denominator):
        raise ValueError(f'paired samples need as many rounds on each side, got '
                         f'{len(numerator)} and {len(denominator)}')
    return median([a / b for a, b in zip(numerator, denominator)])


def add_target_arg(parser: argparse.ArgumentParser, flag: str = '--target',
                   what: str = 'the ratio') -> None:
    """An optional target for a printed ratio (``None``: no target, nothing judged)."""
    parser.add_argument(flag, type=float, default=None, metavar='RATIO',
                        help=f'also print whether {what} is within RATIO (default: none)')


def target_note(values: Sequence[float], target: Optional[float]) -> str:
    """``''`` without a target; otherwise whether every value is within ``target``."""
    if target is None:
        return ''
    over = sum(value > target for value in values)
    if not over:
        return f'; within target (<= {target})'
    return f'; {over} of {len(values)} over target (<= {target})'


def spread(values: Sequence[float]) -> str:
    """Lower and upper quartile relative to the median, e.g. ``-2%/+3%``."""
    if len(values) < 2:
        return '-'
    q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    mid = median(values)
    return f'{(q1 / mid - 1) * 100:+.0f}%/{(q3 / mid - 1) * 100:+.0f}%'


# ------------------------------------------------------------------------ reporting
def markdown_table(rows: Sequence[dict], columns: Optional[Sequence[str]] = None) -> str:
    """A Markdown table of ``rows`` (floats with 3 significant digits)."""
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        if isinstance(value, float):
            return f'{value:.3g}' if abs(value) < 1000 else f'{value:.0f}'
        return str(value)

    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(cell(row.get(c, '')) for c in columns) + ' |' for row in rows]
    return '\n'.join(lines)


def load_average() -> str:
    return ' '.join(f'{v:.2f}' for v in os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name, as ``/proc/cpuinfo`` gives it."""
    model = platform.processor() or 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            model = next(line.split(':', 1)[1].strip() for line in cpuinfo
                         if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return model


def machine_info() -> str:
    """CPU, core count, torch version and threads, and the load right now."""
    return (f'machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads; python {platform.python_version()}; '
            f'load average (1/5/15 min) {load_average()}')


def without_install_dirs(text: str) -> str:
    """``text`` without the checkout's, the installed packages' and python's directories.

    What a benchmark prints is recorded in the repository: paths name files, not machines.
    """
    directories = {REPO, sysconfig.get_paths()['stdlib'], *site.getsitepackages()}
    for directory in sorted(directories, key=len, reverse=True):
        text = text.replace(directory + os.sep, '')
    return text


def print_header(title: str, args: argparse.Namespace) -> None:
    """Apply ``args.threads``, then print the title, machine, command and arguments."""
    if getattr(args, 'threads', None):
        torch.set_num_threads(args.threads)
    print(f'# {title}')
    print(machine_info())
    print('command: ' + ' '.join([osp.relpath(sys.argv[0], REPO)] + sys.argv[1:]))
    arguments = ', '.join(f'{k}={v}' for k, v in vars(args).items())
    print('arguments: ' + without_install_dirs(arguments))
    print(flush=True)


def print_footer(started: float) -> None:
    print(f'\nwall time {time.perf_counter() - started:.0f} s; load average (1/5/15 min) '
          f'{load_average()}', flush=True)
