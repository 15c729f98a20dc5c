"""Per-configuration evaluation: deterministic tables, a checked metric, the calibration data."""
import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from mmaction.evaluation import AccMetric
from mmdet.evaluation import CocoMetric, DumpDetResults, LVISMetric
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, DefaultScope
from mmengine.runner import Runner
from mmpretrain.evaluation import Accuracy

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.deploy import build_adaptive_model
from mutualnet_mm.engine.calibration import build_calibration_loader, deterministic_pipeline
from mutualnet_mm.evaluation.hooks import PerConfigResultsHook
from mutualnet_mm.evaluation.loops import prints_summary
from mutualnet_mm.ops import set_width
from mutualnet_mm.reliability.fingerprint import weights_fingerprint
from mutualnet_mm.tasks import CLASSIFICATION, DETECTION, VIDEO

from ..deploy.demo import IMAGE_SIZE, tiny_demo_config
from ..reliability import digest_metric  # noqa: F401  (registers PredictionDigest)

X3D_DEMO = Path(__file__).resolve().parents[2] / 'configs' / 'demo' / 'x3d_mutual_demo.py'


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> tuple:
    """The tiny demo config (4 training images, batches of 2) and a random checkpoint."""
    root = tmp_path_factory.mktemp('loop')
    generate_coco_shapes(str(root / 'data'), num_train=4, num_val=2, image_size=IMAGE_SIZE)
    cfg = tiny_demo_config(str(root / 'data'))
    torch.manual_seed(0)
    model = build_adaptive_model(cfg)
    checkpoint = str(root / 'epoch_1.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    return cfg, checkpoint, weights_fingerprint(model)


def evaluate(cfg: Config, checkpoint: str, work_dir: Path, rng_seed: int, **test_cfg) -> None:
    """``tools/test.py`` in-process: no training seed, the global RNGs at ``rng_seed``."""
    cfg = copy.deepcopy(cfg)
    cfg.test_cfg = dict(type='PerConfigTestLoop', widths=(1.0, 0.25), scales=(1.0, 0.5),
                        calibration=dict(num_batches=1), **test_cfg)
    cfg.test_evaluator = dict(type='PredictionDigest')  # changes with any prediction
    cfg.load_from = checkpoint
    cfg.work_dir = str(work_dir)
    cfg.pop('randomness', None)
    torch.manual_seed(rng_seed)
    np.random.seed(rng_seed)
    random.seed(rng_seed)
    Runner.from_cfg(cfg).test()


def results(work_dir: Path) -> dict:
    """The result files in ``work_dir`` (the runner also writes its config and logs)."""
    return {p.name: p.read_bytes() for p in work_dir.iterdir()
            if p.name.startswith(('per_config.', 'query_table', 'result_set'))}


def test_two_evaluations_of_one_checkpoint_write_identical_tables(setup, tmp_path) -> None:
    cfg, checkpoint, fingerprint = setup
    evaluate(cfg, checkpoint, tmp_path / 'first', rng_seed=1)
    evaluate(cfg, checkpoint, tmp_path / 'second', rng_seed=2)
    for name in ('per_config.json', 'query_table.json', 'result_set.json'):
        assert (tmp_path / 'first' / name).read_bytes() == \
            (tmp_path / 'second' / name).read_bytes(), name
    table = json.loads((tmp_path / 'first' / 'query_table.json').read_text())
    assert (table['checkpoint'], table['metric']) == (fingerprint, 'digest/score_sum')


def test_a_metric_the_evaluator_does_not_report_fails_before_writing(setup, tmp_path) -> None:
    cfg, checkpoint, _ = setup
    evaluate(cfg, checkpoint, tmp_path, rng_seed=0)
    before = results(tmp_path)
    assert len(before) == 5
    with pytest.raises(ValueError, match=r"metric='digest/scor_sum' is not reported by the "
                                         r"evaluator; it reports \['digest/box_sum', "
                                         r"'digest/num_boxes', 'digest/num_images', "
                                         r"'digest/score_sum'\]. Nothing was written"):
        evaluate(cfg, checkpoint, tmp_path, rng_seed=0, metric='digest/scor_sum')
    assert results(tmp_path) == before


def test_calibration_batches_are_a_fixed_draw_without_augmentation(setup) -> None:
    cfg = setup[0]
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline].count('RandomFlip') == 1
    draws = []
    for rng_seed in (1, 2):
        torch.manual_seed(rng_seed)
        np.random.seed(rng_seed)
        with DefaultScope.overwrite_default_scope('mmdet'):
            loader = build_calibration_loader(cfg.train_dataloader)
        steps = [type(t).__name__ for t in loader.dataset.pipeline.transforms]
        assert steps == ['CheckedLoadImageFromFile', 'LoadAnnotations', 'Resize', 'PackDetInputs']
        draws.append([list(loader), list(loader)])  # twice: once per configuration
    (first, again), (other_run, _) = draws
    for batches in (again, other_run):
        for a, b in zip(first, batches, strict=True):
            assert [s.img_id for s in a['data_samples']] == \
                [s.img_id for s in b['data_samples']]
            assert all(torch.equal(x, y) for x, y in zip(a['inputs'], b['inputs']))


def test_deterministic_pipeline_of_video_and_resize_steps() -> None:
    video = Config.fromfile(str(X3D_DEMO)).train_pipeline
    steps = deterministic_pipeline(video)
    assert [t['type'] for t in steps] == [t['type'] for t in video
                                          if t['type'] != 'RandomResizedCrop']
    sample = next(t for t in steps if t['type'] == 'SampleFrames')
    assert sample['test_mode'] is True and sample['temporal_jitter'] is False
    detection = [dict(type='LoadImageFromFile'),
                 dict(type='RandomResize', scale=[(1333, 640), (1333, 800)], keep_ratio=True),
                 dict(type='mmdet.RandomChoiceResize', scales=[(640, 480), (800, 600)]),
                 dict(type='RandomFlip', prob=0.5), dict(type='PhotoMetricDistortion'),
                 dict(type='PackDetInputs')]
    assert deterministic_pipeline(detection) == [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        dict(type='Resize', scale=(800, 600)),
        dict(type='PackDetInputs')]


def test_every_configuration_is_labelled_logged_and_sent_to_the_visualizer(setup, tmp_path):
    cfg, checkpoint, _ = setup
    cfg = copy.deepcopy(cfg)
    cfg.test_cfg = dict(type='PerConfigTestLoop', widths=(1.0, 0.25), scales=(1.0, 0.5),
                        calibration=dict(num_batches=1))
    cfg.load_from, cfg.work_dir = checkpoint, str(tmp_path)
    # its own logger and visualizer (one process's runners would share them)
    cfg.experiment_name = cfg.visualizer.name = 'labelled'
    Runner.from_cfg(cfg).test()
    log = next(tmp_path.glob('*/*.log')).read_text()
    names = ['w1.00_s1', 'w1.00_s0.5', 'w0.25_s1', 'w0.25_s0.5']  # largest first
    for position, name in enumerate(['w1.00_s0.5', 'w0.25_s1', 'w0.25_s0.5', 'w1.00_s1'], 1):
        assert f'configuration {position}/4: {name}' in log  # the full one runs last
        assert f"evaluating {name} ({position}/4); the evaluator's summary follows" in log
    table = log[log.index('per-configuration results'):]
    header = table.splitlines()[1].split()
    assert {'input_shape', 'backbone', 'neck', 'rpn_head', 'roi_head', 'bbox_mAP',
            'segm_mAP', 'segm_mAP_l'} <= set(header)
    rows = [line.split() for line in table.splitlines()[3:7]]
    assert [(float(r[0]), float(r[1])) for r in rows] == [(1.0, 1.0), (1.0, 0.5), (0.25, 1.0),
                                                          (0.25, 0.5)]
    records = json.loads((tmp_path / 'per_config.json').read_text())['records']
    assert [r['name'] for r in records] == names
    csv_names = [line.split(',')[0] for line in
                 (tmp_path / 'per_config.csv').read_text().splitlines()[1:]]
    assert csv_names == names
    scalars = [json.loads(line) for line in
               next(tmp_path.glob('*/vis_data/scalars.json')).read_text().splitlines()]
    keys = {key for entry in scalars for key in entry}
    expected = {f'per_config/{r["name"]}/{k}' for r in records for k, v in r.items()
                if isinstance(v, (int, float))}
    assert {f'per_config/{name}/gflops_backbone' for name in names} <= expected
    assert 'per_config/w1.00_s1/coco/segm_mAP' in expected
    assert expected <= keys
    assert list(tmp_path.glob('*/vis_data/vis_image/per_config_0.png'))


def test_decoupled_grid_evaluates_every_width_with_every_head_width(setup, tmp_path):
    from mutualnet_mm.deploy import resolve_config
    from mutualnet_mm.evaluation import QueryTable
    cfg, checkpoint, fingerprint = setup
    cfg = copy.deepcopy(cfg)
    cfg.test_cfg = dict(type='PerConfigTestLoop', widths=(1.0, 0.25), head_widths=(1.0, 0.5),
                        scales=(1.0,), calibration=dict(num_batches=1))
    cfg.load_from, cfg.work_dir = checkpoint, str(tmp_path)
    cfg.experiment_name = cfg.visualizer.name = 'decoupled'
    Runner.from_cfg(cfg).test()
    records = json.loads((tmp_path / 'per_config.json').read_text())['records']
    assert [r['name'] for r in records] == ['w1.00_h1.00_s1', 'w1.00_h0.50_s1',
                                            'w0.25_h1.00_s1', 'w0.25_h0.50_s1']
    assert [(r['width'], r['head_width']) for r in records] == [(1.0, 1.0), (1.0, 0.5),
                                                               (0.25, 1.0), (0.25, 0.5)]
    # the heads' cost follows the head width, the backbone's the backbone width
    by_name = {r['name']: r for r in records}
    assert by_name['w1.00_h0.50_s1']['gflops_backbone'] == \
        by_name['w1.00_h1.00_s1']['gflops_backbone']
    assert by_name['w1.00_h0.50_s1']['gflops_rpn_head'] < \
        by_name['w1.00_h1.00_s1']['gflops_rpn_head']
    assert by_name['w0.25_h1.00_s1']['gflops_backbone'] < \
        by_name['w1.00_h1.00_s1']['gflops_backbone']
    header = (tmp_path / 'per_config.csv').read_text().splitlines()[0].split(',')
    assert header[:4] == ['name', 'width', 'head_width', 'scale']
    table = QueryTable.load(str(tmp_path / 'query_table.json'), fingerprint)
    assert all('head_width' in entry for entry in table.entries)
    cheapest = table.entries[0]
    config, entry = resolve_config(budget=cheapest['gflops'], query_table=str(
        tmp_path / 'query_table.json'), checkpoint=fingerprint)
    assert config.head_width == cheapest['head_width'] and config.name == cheapest['name']


def test_tensorboard_gets_every_configuration_and_the_plot(setup, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg, checkpoint, _ = setup
    cfg = copy.deepcopy(cfg)
    cfg.test_cfg = dict(type='PerConfigTestLoop', widths=(1.0, 0.25), scales=(1.0,),
                        calibration=dict(num_batches=1))
    cfg.load_from, cfg.work_dir = checkpoint, str(tmp_path)
    # The README's command: --cfg-options visualizer.vis_backends.0.type=TensorboardVisBackend
    cfg.merge_from_dict({'visualizer.vis_backends.0.type': 'TensorboardVisBackend'})
    cfg.experiment_name = cfg.visualizer.name = 'tensorboard'
    Runner.from_cfg(cfg).test()
    events = EventAccumulator(str(next(tmp_path.glob('*/vis_data/events.out.*')).parent))
    events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'per_config/w1.00_s1/gflops', 'per_config/w0.25_s1/gflops'} <= tags
    assert 'per_config/w1.00_s1/coco/bbox_mAP' in tags
    assert 'per_config' in events.Tags()['images']


def test_the_summary_is_announced_only_for_evaluators_that_print_one() -> None:
    assert prints_summary([CocoMetric(), DumpDetResults(out_file_path='x.pkl')], DETECTION)
    assert prints_summary([LVISMetric.__new__(LVISMetric)], DETECTION)  # a CocoMetric
    assert not prints_summary([Accuracy(topk=(1, 5))], CLASSIFICATION)
    assert not prints_summary([AccMetric()], VIDEO)


@HOOKS.register_module()
class RecordingPerConfigHook(Hook):
    """Records the per-configuration events a user hook receives."""

    def __init__(self) -> None:
        self.events = []

    def after_test_config(self, runner, position, config, record) -> None:
        self.events.append(('config', position, config.name, record['name']))

    def after_test_grid(self, runner, records, metric, fingerprint) -> None:
        self.events.append(('grid', [r['name'] for r in records], metric, fingerprint))
        self.written_before = (Path(runner.work_dir) / 'per_config.json').exists()


def test_a_user_hook_gets_each_configuration_and_the_grid(setup, tmp_path) -> None:
    cfg, checkpoint, fingerprint = setup
    cfg = copy.deepcopy(cfg)
    cfg.custom_hooks = [dict(type='RecordingPerConfigHook')]
    cfg.test_cfg = dict(type='PerConfigTestLoop', widths=(1.0, 0.25), scales=(1.0,),
                        calibration=dict(num_batches=1))
    cfg.load_from, cfg.work_dir = checkpoint, str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.test()
    hook = next(h for h in runner.hooks if isinstance(h, RecordingPerConfigHook))
    assert hook.events == [('config', 1, 'w0.25_s1', 'w0.25_s1'),
                           ('config', 2, 'w1.00_s1', 'w1.00_s1'),
                           ('grid', ['w1.00_s1', 'w0.25_s1'], 'coco/bbox_mAP', fingerprint)]
    # the results hook runs at a lower priority than a custom hook's default
    assert not hook.written_before and (tmp_path / 'per_config.json').exists()
    assert sum(isinstance(h, PerConfigResultsHook) for h in runner.hooks) == 1


@HOOKS.register_module()
class SwapThroughDataHook(Hook):
    """Swaps other weights in through ``param.data``, as mmengine's ``EMAHook`` does, after
    an evaluating forward at width 0.25 has kept weight slices."""

    def __init__(self, weights: str) -> None:
        self.weights = weights

    def before_test_epoch(self, runner) -> None:
        model = runner.model
        set_width(model, 0.25)
        with torch.no_grad():
            model.extract_feat(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
        swapped = torch.load(self.weights, weights_only=True)['state_dict']
        for name, tensor in model.state_dict(keep_vars=True).items():
            tensor.data.copy_(swapped[name])
        set_width(model, 1.0)


def test_weights_swapped_through_data_before_the_grid_are_the_ones_evaluated(
        setup, tmp_path) -> None:
    cfg, checkpoint, _ = setup
    torch.manual_seed(1)
    other = str(tmp_path / 'other.pth')
    torch.save({'state_dict': build_adaptive_model(cfg).state_dict()}, other)
    evaluate(cfg, other, tmp_path / 'other', rng_seed=0)
    swapping = copy.deepcopy(cfg)
    swapping.custom_hooks = [dict(type='SwapThroughDataHook', weights=other)]
    evaluate(swapping, checkpoint, tmp_path / 'swapped', rng_seed=0)
    want = json.loads((tmp_path / 'other' / 'per_config.json').read_text())['records']
    got = json.loads((tmp_path / 'swapped' / 'per_config.json').read_text())['records']
    assert [r['digest/score_sum'] for r in got] == [r['digest/score_sum'] for r in want]
