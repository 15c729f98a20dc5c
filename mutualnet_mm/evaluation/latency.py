"""Latency of a forward pass on the machine at hand: the median of repeated runs."""
import statistics
import time
from typing import Callable

import torch

from ..checks import check_int


def measure_latency(run: Callable[[], object], repeats: int = 20, warmup: int = 5,
                    cuda: bool = False) -> float:
    """Median wall time of ``run()`` in milliseconds.

    Args:
        run: One forward pass (e.g. ``predict`` on a batch of one).
        repeats: Timed runs.
        warmup: Untimed runs first (allocator, caches, lazy initialization).
        cuda: Synchronize the GPU around each run, so asynchronous kernels are counted.

    Raises:
        ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    check_int(repeats, 'repeats', 1)
    check_int(warmup, 'warmup', 0)
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
