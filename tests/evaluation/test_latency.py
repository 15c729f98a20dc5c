"""Latency: the median of repeated runs, and its column and query table in per-config evaluation."""
import json
import os.path as osp
import time

import pytest
from mmengine.runner import Runner

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.evaluation import measure_latency

from ..deploy.demo import IMAGE_SIZE, tiny_demo_config


def test_measure_latency_is_the_median_after_warmup() -> None:
    durations = iter([0.05, 0.0, 0.002, 0.1, 0.002, 0.002])  # warmup, then 5 timed runs
    calls = []

    def run():
        calls.append(1)
        time.sleep(next(durations))

    latency = measure_latency(run, repeats=5, warmup=1)
    assert len(calls) == 6
    assert 2.0 <= latency < 15.0  # the median of (0, 2, 100, 2, 2) ms: 2, the mean: 21


def test_measure_latency_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match='repeats must be an integer >= 1, got 0'):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(ValueError, match='warmup must be an integer >= 0, got -1'):
        measure_latency(lambda: None, warmup=-1)


def test_per_config_test_loop_records_latency_and_writes_its_query_table(tmp_path) -> None:
    data_root = str(tmp_path / 'data')
    generate_coco_shapes(data_root, num_train=2, num_val=2, image_size=IMAGE_SIZE)
    cfg = tiny_demo_config(data_root)
    cfg.test_cfg = dict(type='PerConfigTestLoop', widths=(1.0, 0.25), scales=(1.0,),
                        calibration=dict(num_batches=1), latency=dict(repeats=3, warmup=1))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.logger.interval = 1
    Runner.from_cfg(cfg).test()
    with open(osp.join(cfg.work_dir, 'per_config.json')) as f:
        records = json.load(f)['records']
    assert [r['width'] for r in records] == [1.0, 0.25]  # largest first
    assert all(r['latency_ms'] > 0 for r in records)
    with open(osp.join(cfg.work_dir, 'query_table_latency_ms.json')) as f:
        table = json.load(f)
    assert table['cost'] == 'latency_ms'
    assert all('latency_ms' in entry for entry in table['entries'])
    with open(osp.join(cfg.work_dir, 'per_config.csv')) as f:
        assert 'latency_ms' in f.readline()
