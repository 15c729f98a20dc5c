"""The RTMDet demo recipe trains a (width, depth, scale) cohort and evaluates a depth grid."""
import json
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import mutualnet_mm
from mutualnet_mm.datasets import COCO_SHAPES_CLASSES, generate_coco_shapes
from mutualnet_mm.evaluation import QueryTable

CONFIG = Path(__file__).parents[2] / 'configs' / 'demo' / 'rtmdet_mutual_shapes.py'


@pytest.mark.slow
def test_rtmdet_demo_trains_a_depth_cohort_and_evaluates_every_depth(tmp_path: Path) -> None:
    data_root = tmp_path / 'coco_shapes'
    generate_coco_shapes(data_root, num_train=2, num_val=2, image_size=64)
    cfg = Config.fromfile(str(CONFIG))
    dataset = dict(data_root=f'{data_root}/', metainfo=dict(classes=COCO_SHAPES_CLASSES))
    loader = dict(num_workers=0, persistent_workers=False)
    cfg.merge_from_dict({
        'work_dir': str(tmp_path / 'work'),
        'train_dataloader': dict(**loader, batch_size=2, dataset=dataset),
        'test_dataloader': dict(**loader, batch_size=2, dataset=dataset),
        'test_evaluator.ann_file': str(data_root / 'annotations/instances_val.json'),
        'train_cfg.max_epochs': 1, 'train_cfg.mutual.full_only_fraction': 0.0,
        'val_dataloader': None, 'val_cfg': None, 'val_evaluator': None,
        'test_cfg.scales': (1.0,), 'test_cfg.calibration.num_batches': 1,
        'model.test_cfg.score_thr': 0.0,  # detections even after one iteration
        'default_hooks.checkpoint': None,
    })
    runner = Runner.from_cfg(cfg)
    depths = []
    runner.model.backbone.register_forward_pre_hook(
        lambda module, _args: depths.append(module.depth))
    runner.train()
    cohort = runner.train_loop.mutual_step.sampler.cohort(0)
    assert depths == [c.depth for c in cohort] and depths[0] == 1.0 and depths[-1] == 0.5

    runner.test()
    work_dir = Path(cfg.work_dir)
    records = json.loads((work_dir / 'per_config.json').read_text())['records']
    assert [r['name'] for r in records] == ['w1.00_d1_s1', 'w1.00_d0.5_s1', 'w0.75_d1_s1',
                                            'w0.75_d0.5_s1']
    assert records[0]['gflops'] > records[1]['gflops'] > records[3]['gflops']
    table = QueryTable.load(str(work_dir / 'query_table.json'))
    assert all('depth' in entry for entry in table.entries)
    assert (mutualnet_mm.get_width(runner.model), mutualnet_mm.ops.get_depth(runner.model)) \
        == (1.0, 1.0)
