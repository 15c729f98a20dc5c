"""Latency of a forward pass on the machine at hand: the median of repeated runs."""
import statistics
import time
from typing import Callable, Mapping

import torch

from ..checks import check_int

#: The options of :func:`measure_latency` and the smallest value each allows.
LATENCY_MINIMUMS = {'repeats': 1, 'warmup': 0}


def check_latency_options(options: Mapping[str, object], name: str) -> None:
    """Raise unless ``options`` are valid ``repeats``/``warmup`` of :func:`measure_latency`.

    Args:
        options: Some of the options (those absent keep their defaults).
        name: Where they come from, for messages (e.g. ``PerConfigTestLoop.latency``).

    Raises:
        KeyError: an unknown option.
        ValueError: ``repeats`` < 1 or ``warmup`` < 0, or not an integer.
    """
    unknown = set(options) - set(LATENCY_MINIMUMS)
    if unknown:
        raise KeyError(f'unknown {name} key(s) {sorted(unknown)}; allowed: '
                       f'{list(LATENCY_MINIMUMS)}')
    for key, value in options.items():
        check_int(value, f'{name}.{key}', LATENCY_MINIMUMS[key])


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
    check_latency_options(dict(repeats=repeats, warmup=warmup), 'measure_latency')
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
