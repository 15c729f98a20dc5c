"""Every config builds its model; the Mask R-CNN R50 recipe trains and evaluates end to end."""
import json
import math
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import mutualnet_mm
from mutualnet_mm.datasets import COCO_SHAPES_CLASSES, generate_coco_shapes

CONFIGS = Path(__file__).parents[2] / 'configs'
ALL_CONFIGS = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob('*.py')
                     if p.relative_to(CONFIGS).parts[0] != '_base_')


def registry_of(cfg: Config):
    if cfg.default_scope == 'mmaction':
        from mmaction.registry import MODELS
        return MODELS
    if cfg.default_scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
        return MODELS
    from mmdet.registry import MODELS
    return MODELS


def test_every_config_is_listed() -> None:
    assert 'maskrcnn_mutual_r50.py' in ALL_CONFIGS
    assert 'demo/maskrcnn_mutual_r18_shapes.py' in ALL_CONFIGS
    assert not any(name.startswith('_base_') for name in ALL_CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_saves_checkpoints_safely(name: str) -> None:
    assert Config.fromfile(str(CONFIGS / name)).default_hooks.checkpoint.type == (
        'SafeCheckpointHook')


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_builds_its_model(name: str) -> None:
    cfg = Config.fromfile(str(CONFIGS / name))
    assert cfg.default_scope in ('mmdet', 'mmaction', 'mmpretrain')
    assert cfg.train_cfg.type.startswith('Mutual') and 'mutual' in cfg.train_cfg
    assert cfg.test_cfg.type == 'PerConfigTestLoop'
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry_of(cfg).build(cfg.model)
    low, high = mutualnet_mm.width_range_of(model)
    assert high == 1.0 and 0 < low < 1.0
    assert low <= min(cfg.test_cfg.widths) and max(cfg.test_cfg.widths) <= high
    mutualnet_mm.set_width(model, low)  # every slimmable part follows
    assert mutualnet_mm.get_width(model) == low


SIZE = 128  # pipeline scale; the generated images are 64 x 64


def tiny_r50_config(data_root: Path, work_dir: Path) -> Config:
    """``maskrcnn_mutual_r50.py`` on the generated shapes: one iteration, a 2-config grid.

    The model is unchanged but for its initialization (no ImageNet download), its
    number of classes (5), and the number of proposals and detections it keeps; the
    data is 2 training and 2 test images of 128 x 128.
    """
    cfg = Config.fromfile(str(CONFIGS / 'maskrcnn_mutual_r50.py'))
    dataset = dict(data_root=f'{data_root}/', metainfo=dict(classes=COCO_SHAPES_CLASSES))
    loader = dict(num_workers=0, persistent_workers=False)
    cfg.merge_from_dict({
        'work_dir': str(work_dir),
        'model.backbone.init_cfg': None,
        'model.roi_head.bbox_head.num_classes': len(COCO_SHAPES_CLASSES),
        'model.roi_head.mask_head.num_classes': len(COCO_SHAPES_CLASSES),
        'model.train_cfg.rpn_proposal.nms_pre': 200,
        'model.train_cfg.rpn_proposal.max_per_img': 100,
        'model.train_cfg.rcnn.sampler.num': 64,
        'model.test_cfg.rpn.nms_pre': 200,
        'model.test_cfg.rpn.max_per_img': 100,
        'model.test_cfg.rcnn.max_per_img': 10,
        'model.test_cfg.rcnn.score_thr': 0.0,  # detections even after one iteration
        'train_dataloader': dict(
            **loader, batch_size=2,
            dataset=dict(**dataset, ann_file='annotations/instances_train.json',
                         data_prefix=dict(img='train/'))),
        'train_dataloader.dataset.pipeline.2.scale': (SIZE, SIZE),
        'test_dataloader': dict(
            **loader, dataset=dict(**dataset, ann_file='annotations/instances_val.json',
                                   data_prefix=dict(img='val/'))),
        'test_dataloader.dataset.pipeline.1.scale': (SIZE, SIZE),
        'test_evaluator.ann_file': str(data_root / 'annotations/instances_val.json'),
        'train_cfg.max_epochs': 1,
        'val_dataloader': None,  # no validation during training
        'val_cfg': None,
        'val_evaluator': None,
        'test_cfg.widths': (1.0, 0.25),
        'test_cfg.scales': (1.0,),
        'test_cfg.calibration.num_batches': 1,
        'default_hooks.checkpoint': None,
        'default_hooks.logger.interval': 1,
        'randomness': dict(seed=0),
    })
    return cfg


@pytest.mark.slow
def test_maskrcnn_r50_trains_one_iteration_then_evaluates_per_config(tmp_path: Path) -> None:
    start = time.perf_counter()
    data_root = tmp_path / 'coco_shapes'
    generate_coco_shapes(data_root, num_train=2, num_val=2, image_size=64)
    cfg = tiny_r50_config(data_root, tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    model = runner.model
    norms = {type(m).__name__ for m in model.backbone.modules() if 'Norm' in type(m).__name__}
    assert norms == {'SlimmableSyncBatchNorm'}  # SyncBN, run as plain BN in one process

    passes = []
    model.backbone.register_forward_pre_hook(
        lambda _m, args: passes.append((args[0].shape[-1], mutualnet_mm.get_width(model))))
    before = model.neck.fpn_convs[0].conv.weight.detach().clone()
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    optimizer = runner.optim_wrapper.optimizer
    original_step, steps = optimizer.step, []

    def step(*args, **kwargs):
        steps.append(len(passes))  # passes run before this step
        return original_step(*args, **kwargs)
    optimizer.step = step

    train_loop = runner.train_loop
    runner.train()
    assert train_loop.iter == 1
    cohort = train_loop.mutual_step.sampler.cohort(0)
    assert [w for _, w in passes] == pytest.approx([c.width for c in cohort])
    assert [size for size, _ in passes] == [math.ceil(round(SIZE * c.scale) / 32) * 32
                                            for c in cohort]
    assert steps == [4]  # one optimizer step, after the 4 passes
    assert not torch.equal(model.neck.fpn_convs[0].conv.weight, before)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    trained = time.perf_counter()

    metrics = runner.test()
    per_config = json.loads((Path(cfg.work_dir) / 'per_config.json').read_text())
    records = per_config['records']
    assert [(r['width'], r['scale']) for r in records] == [(1.0, 1.0), (0.25, 1.0)]
    assert per_config['metric'] == 'coco/bbox_mAP'
    assert all('coco/bbox_mAP' in r and 'coco/segm_mAP' in r for r in records)
    assert records[0]['gflops'] > records[1]['gflops']
    assert records[0]['mparams'] > records[1]['mparams']
    assert metrics['coco/bbox_mAP'] == records[0]['coco/bbox_mAP']  # the full configuration
    for name in ('per_config.csv', 'query_table.json', 'per_config.png'):
        assert (Path(cfg.work_dir) / name).is_file()
    assert mutualnet_mm.get_width(model) == 1.0
    print(f'R50 one iteration: {trained - start:.1f} s, 2-config test: '
          f'{time.perf_counter() - trained:.1f} s')
