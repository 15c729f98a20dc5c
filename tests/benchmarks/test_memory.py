"""``benchmarks/memory.py``: the table compares the mutual iteration with its largest
plain pass, and the floor holds the summed gradients through the later passes."""

import pytest

from .test_common import load_script

memory = load_script('memory')


def _record(first: float, steady: float, params: float) -> dict:
    return dict(first_mb=first, steady_mb=steady, params_mb=params)


def test_ratios_are_to_the_largest_plain_pass_and_the_floor_adds_full_gradients() -> None:
    results = {
        'mutual': [_record(60, 100, 10), _record(62, 90, 10), _record(58, 95, 10)],
        'plain w1.00_s1': [_record(50, 80, 10)] * 3,
        'plain w0.50_s1': [_record(45, 75, 4)] * 3,  # a later pass: + 10 MB of gradients
    }
    rows = {row['case']: row for row in memory.memory_rows(results)}
    assert rows['mutual']['first_mb'] == 60 and rows['mutual']['first_range'] == '58-62'
    assert rows['mutual']['first_ratio'] == pytest.approx(60 / 50)
    assert rows['mutual']['iters_1-3_ratio'] == pytest.approx(95 / 80)
    assert rows['plain w0.50_s1']['first_ratio'] == pytest.approx(45 / 50)
    floor = rows['floor: first pass, or a later one holding the summed gradients']
    assert floor['first_mb'] == 55 and floor['iters_1-3_mb'] == 85  # 45 + 10, 75 + 10
    assert floor['first_ratio'] == pytest.approx(55 / 50)
