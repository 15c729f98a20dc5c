"""How close the logged ETA is to the time a demo training actually takes to finish.

Each demo trains with ``tools/train.py`` in a temporary folder, on data written there by
its tool, and runs to the end (the per-configuration evaluation of the whole grid
included). From its log: the ETA shown at the end of the first epoch and at the end of
the warm-up (the last training line before the cohort joins), against the time from
that line to the log's last line.

    python benchmarks/eta.py                       # the three demos, ~10 min on 2 cores
    python benchmarks/eta.py --demos detector --detector-epochs 24
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from typing import Dict, List, Optional, Tuple

from common import REPO, add_target_arg, markdown_table, print_footer, print_header

#: demo name: (config, data tool and its arguments).
DEMOS: Dict[str, Tuple[str, List[str]]] = {
    'detector': ('configs/demo/maskrcnn_mutual_r18_shapes.py',
                 ['tools/make_demo_data.py', '--out', 'data/coco_shapes', '--num-train', '400',
                  '--num-val', '100', '--size', '128']),
    'video': ('configs/demo/x3d_mutual_demo.py',
              ['tools/make_demo_videos.py', '--out', 'data/motion_clips']),
    'classifier': ('configs/demo/resnet18_mutual_digits.py',
                   ['tools/make_digits_data.py', '--out', 'data/digits']),
}
_STAMP = r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - \w+ - '
_TRAIN_LINE = re.compile(_STAMP + r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\].*?'
                         r'eta: ((?:\d+ days?, )?[\d:]+)')
_JOIN_LINE = re.compile(_STAMP + r'iteration \d+: the warm-up of')
_ANY_LINE = re.compile(_STAMP)


def _time(stamp: str) -> datetime:
    return datetime.strptime(stamp, '%Y/%m/%d %H:%M:%S')


def _seconds(eta: str) -> float:
    """``H:MM:SS`` or ``N day(s), H:MM:SS`` as seconds."""
    days = 0
    if 'day' in eta:
        count, _, eta = eta.partition(',')
        days = int(count.split()[0])
    hours, minutes, seconds = (float(part) for part in eta.strip().split(':'))
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def eta_points(log: str) -> List[dict]:
    """The ETA at the end of the first epoch and of the warm-up, and the time it took."""
    lines = log.splitlines()
    stamps = [m.group(1) for m in map(_ANY_LINE.match, lines) if m]
    end = _time(stamps[-1])
    train = [(i, m) for i, m in ((i, _TRAIN_LINE.match(line)) for i, line in enumerate(lines))
             if m]
    points: List[Tuple[str, Optional[re.Match]]] = [
        ('end of epoch 1', next((m for _, m in reversed(train) if m.group(2) == '1'), None))]
    join = next((i for i, line in enumerate(lines) if _JOIN_LINE.match(line)), None)
    if join is not None:
        points.append(('end of warm-up', next((m for i, m in reversed(train) if i < join),
                                              None)))
    rows = []
    for point, match in points:
        if match is None:
            continue
        shown, taken = _seconds(match.group(5)), (end - _time(match.group(1))).total_seconds()
        rows.append({'point': point, 'line': f'[{match.group(2)}][{match.group(3)}/'
                                             f'{match.group(4)}]',
                     'ETA shown s': shown, 'took s': taken,
                     'error': f'{(shown / taken - 1) * 100:+.0f}%'})
    return rows


def run_demo(name: str, epochs: Optional[int], folder: str) -> Tuple[List[dict], float]:
    """Write the demo's data and train it in ``folder``; its ETA points and wall time."""
    config, data_tool = DEMOS[name]
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS='ignore')
    subprocess.run([sys.executable, osp.join(REPO, data_tool[0]), *data_tool[1:]], cwd=folder,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command = [sys.executable, osp.join(REPO, 'tools', 'train.py'), osp.join(REPO, config),
               '--work-dir', 'work_dir']
    if epochs is not None:
        command += ['--cfg-options', f'train_cfg.max_epochs={epochs}']
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    log = max(osp.join(root, f) for root, _, files in os.walk(osp.join(folder, 'work_dir'))
              for f in files if f.endswith('.log'))
    with open(log) as handle:
        return eta_points(handle.read()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--demos', nargs='+', choices=sorted(DEMOS),
                        default=['detector', 'video', 'classifier'])
    parser.add_argument('--detector-epochs', type=int, default=4,
                        help="the detector demo's schedule (its config: 24 epochs)")
    parser.add_argument('--keep', metavar='DIR',
                        help='train in DIR/<demo> and keep it (default: a temporary folder)')
    add_target_arg(parser, what="every ETA's error")
    args = parser.parse_args()
    print_header('ETA shown vs. time taken, demo trainings', args)
    started = time.perf_counter()
    rows = []
    for name in args.demos:
        epochs = args.detector_epochs if name == 'detector' else None
        if args.keep:
            folder = osp.join(args.keep, name)
            os.makedirs(folder, exist_ok=True)
            points, wall = run_demo(name, epochs, folder)
        else:
            with tempfile.TemporaryDirectory(prefix=f'mutualnet_eta_{name}_') as folder:
                points, wall = run_demo(name, epochs, folder)
        schedule = f'{epochs} epochs' if epochs else 'as configured'
        rows += [{'demo': f'{name} ({schedule})', **row, 'training wall s': wall}
                 for row in points]
    print(markdown_table(rows))
    if args.target is not None:
        errors = [abs(row['ETA shown s'] / row['took s'] - 1) for row in rows]
        over = sum(error > args.target for error in errors)
        print(f'\nlargest error {max(errors) * 100:.0f}%: '
              + (f'every ETA within {args.target * 100:.0f}%' if not over else
                 f'{over} of {len(errors)} over {args.target * 100:.0f}%'))
    print_footer(started)


if __name__ == '__main__':
    main()
