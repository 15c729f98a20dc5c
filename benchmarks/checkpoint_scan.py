"""What the scan before unpickling costs, next to ``torch.load`` of the same checkpoint.

For each config, a checkpoint laid out as mmengine saves one (weights, SGD momentum,
scheduler state, a message hub with numpy-backed ``HistoryBuffer`` logs) is written to a
temporary folder, then three things are timed in interleaved rounds on the same file
(in the page cache after the first round):

- scan: :func:`mutualnet_mm.reliability.checkpoint_scan.scan_checkpoint` alone;
- torch.load: ``torch.load(weights_only=True)`` alone;
- load_checkpoint_safely: what every entry point runs (scan, load, stand-in checks).

    python benchmarks/checkpoint_scan.py            # the demo Mask R-CNN and Mask R-CNN R50-FPN
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from common import (
    DEMO_CONFIG,
    REPO,
    Case,
    build_model,
    markdown_table,
    median,
    paired_ratio,
    print_footer,
    print_header,
    spread,
    time_interleaved,
)
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

from mutualnet_mm.reliability.checkpoint import load_checkpoint_safely
from mutualnet_mm.reliability.checkpoint_scan import scan_checkpoint

CONFIGS = (DEMO_CONFIG, os.path.join(REPO, 'configs', 'maskrcnn_mutual_r50.py'))


def write_checkpoint(config: str, path: str) -> None:
    """A checkpoint of ``config``'s model after one SGD step, as mmengine lays it out."""
    model = build_model(Config.fromfile(config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 1e-3)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[8, 11])
    logs = {f'train/{name}': HistoryBuffer(list(np.linspace(0, 1, 50)), [1] * 50)
            for name in ('loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
                         'loss_mask', 'lr', 'time', 'data_time')}
    torch.save({'meta': {'epoch': 1, 'iter': 100, 'seed': 0, 'dataset_meta': {
                    'classes': ('a', 'b', 'c'), 'palette': [(1, 2, 3)] * 3}},
                'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'param_schedulers': [scheduler.state_dict()],
                'message_hub': {'log_scalars': logs, 'runtime_info': {'epoch': 1, 'iter': 100}},
                'rng': torch.get_rng_state()}, path)


def time_loaders(path: str, repeats: int) -> dict:
    """Seconds per round of the scan, ``torch.load`` and ``load_checkpoint_safely``."""
    return time_interleaved([
        Case('scan', lambda: scan_checkpoint(path)),
        Case('torch.load', lambda: torch.load(path, map_location='cpu', weights_only=True)),
        Case('load_checkpoint_safely', lambda: load_checkpoint_safely(path)),
    ], repeats=repeats, block=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=30, help='timed rounds')
    args = parser.parse_args()
    started = time.perf_counter()
    print_header('Checkpoint scan vs. torch.load', args)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for config in CONFIGS:
            path = os.path.join(folder, 'checkpoint.pth')
            write_checkpoint(config, path)
            times = time_loaders(path, args.repeats)
            rows.append({
                'config': os.path.relpath(config, REPO),
                'file MB': os.path.getsize(path) / 1e6,
                'scan ms': median(times['scan']) * 1e3,
                'torch.load ms': median(times['torch.load']) * 1e3,
                'safe load ms': median(times['load_checkpoint_safely']) * 1e3,
                'scan / torch.load': paired_ratio(times['scan'], times['torch.load']),
                'safe / torch.load': paired_ratio(times['load_checkpoint_safely'],
                                                  times['torch.load']),
                'torch.load quartiles': spread(times['torch.load']),
            })
    print(markdown_table(rows))
    print_footer(started)


if __name__ == '__main__':
    main()
