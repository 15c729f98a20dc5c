"""``benchmarks/eta.py`` reads the ETA points off a training log."""

import pytest

from .test_common import load_script

eta = load_script('eta')

LOG = '''\
2026/01/02 10:00:00 - mmengine - INFO - mutual learning: 4 configurations per iteration
2026/01/02 10:00:10 - mmengine - INFO - Epoch(train) [1][10/20]  lr: 1e-3  eta: 0:05:00  time: 1
2026/01/02 10:00:20 - mmengine - INFO - Epoch(train) [1][20/20]  lr: 1e-3  eta: 0:04:10  time: 1
2026/01/02 10:00:30 - mmengine - INFO - Epoch(train) [2][10/20]  lr: 1e-3  eta: 0:04:00  time: 1
2026/01/02 10:00:40 - mmengine - INFO - Epoch(train) [2][20/20]  lr: 1e-3  eta: 1 day, 0:00:10  x
2026/01/02 10:00:40 - mmengine - INFO - iteration 41: the warm-up of 40 iterations is over
2026/01/02 10:01:40 - mmengine - INFO - Epoch(train) [3][10/20]  lr: 1e-3  eta: 0:02:00  time: 3
2026/01/02 10:05:00 - mmengine - INFO - Epoch(val) [4][13/13]    coco/bbox_mAP: 0.4740
'''


def test_the_eta_points_are_the_last_lines_of_epoch_1_and_of_the_warm_up() -> None:
    first, warm_up = eta.eta_points(LOG)
    assert (first['point'], first['line']) == ('end of epoch 1', '[1][20/20]')
    assert (first['ETA shown s'], first['took s']) == (250.0, 280.0)  # 10:00:20 -> 10:05:00
    assert first['error'] == f'{(250 / 280 - 1) * 100:+.0f}%'
    assert (warm_up['point'], warm_up['line']) == ('end of warm-up', '[2][20/20]')
    assert (warm_up['ETA shown s'], warm_up['took s']) == (86410.0, 260.0)


def test_a_run_without_warm_up_has_one_point() -> None:
    lines = [line for line in LOG.splitlines() if 'warm-up' not in line]
    assert [row['point'] for row in eta.eta_points('\n'.join(lines))] == ['end of epoch 1']


@pytest.mark.parametrize('text, seconds', [('0:04:10', 250.0), ('12:00:00', 43200.0),
                                           ('2 days, 1:00:00', 176400.0)])
def test_eta_strings_are_read_as_seconds(text, seconds) -> None:
    assert eta._seconds(text) == seconds
