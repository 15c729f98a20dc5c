"""The ImageNet classification recipes: the reference's facts, one training iteration each."""
import json
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import TRANSFORMS
from torch import nn

from mutualnet_mm.engine.calibration import build_calibration_loader, deterministic_pipeline

CONFIGS = Path(__file__).parents[2] / 'configs'
RECIPES = {  # recipe -> (width range, LR, batch per GPU, epochs, crop area from)
    'classification/mobilenet-v1_mutual_in1k.py': ((0.25, 1.0), 0.5, 128, 250, 0.25),
    'classification/mobilenet-v2_mutual_in1k.py': ((0.7, 1.0), 0.5, 128, 250, 0.25),
    'classification/mobilenet-v2_mutual-w0.35_in1k.py': ((0.35, 1.0), 0.5, 128, 250, 0.25),
    'classification/resnet50_mutual_in1k.py': ((0.25, 1.0), 0.2, 64, 120, 0.08),
    'classification/resnet18_mutual_in1k.py': ((0.25, 1.0), 0.2, 64, 120, 0.08),
}
SIZE = 32  # the tests' crop (the recipes: 224)
# The widths of the reference's published query tables (MobileNetV2: also 0.95 and 0.9).
PUBLISHED_WIDTHS = {
    'classification/mobilenet-v1_mutual_in1k.py': (1.0, 0.85, 0.7, 0.5, 0.35, 0.25),
    'classification/mobilenet-v2_mutual_in1k.py': (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7),
}
# The reference's Lighting (utils/transforms.py): ImageNet PCA on the 0-1 scale, rows of
# the eigenvectors in RGB order, added to the uint8 RGB image, clipped, cast to uint8.
REFERENCE_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
REFERENCE_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140],
                             [-0.5836, -0.6948, 0.4203]])


def test_every_classification_recipe_is_listed() -> None:
    found = {p.relative_to(CONFIGS).as_posix() for p in (CONFIGS / 'classification').glob('*.py')}
    assert found == set(RECIPES)


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_states_the_reference_facts(name: str) -> None:
    width_range, lr, batch, epochs, crop_min = RECIPES[name]
    cfg = Config.fromfile(str(CONFIGS / name))
    assert cfg.model.backbone.width_range == width_range
    mutual = cfg.train_cfg.mutual
    assert mutual.num_subnets == 4
    assert [round(224 * s) for s in mutual.scales] == [224, 192, 160, 128]
    assert mutual.rescaler == dict(type='ClsBatchRescaler', align_corners=True)
    assert mutual.distill == dict(type='LogitDistiller', module='head', label_loss=False)
    assert cfg.model.head.loss == dict(type='CrossEntropyLoss', loss_weight=1.0)  # no smoothing
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.nesterov,
            optimizer.weight_decay) == ('SGD', lr, 0.9, True, 1e-4)
    assert cfg.param_scheduler.type == 'CosineAnnealingLR'
    assert cfg.param_scheduler.convert_to_iter_based and cfg.param_scheduler.T_max == epochs
    assert cfg.train_cfg.max_epochs == epochs and cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr.base_batch_size == 8 * batch
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert crop.type == 'RandomResizedCrop' and crop.crop_ratio_range == (crop_min, 1.0)
    for loop in (cfg.val_cfg, cfg.test_cfg):
        assert loop.metric == 'accuracy/top1' and loop.calibration.num_batches == 9
        assert loop.rescaler == mutual.rescaler  # evaluated as trained
        assert min(loop.widths) == width_range[0] and max(loop.widths) == 1.0
        assert [round(224 * s) for s in loop.scales] == [224, 192, 160, 128]


@pytest.mark.parametrize('name', sorted(PUBLISHED_WIDTHS))
def test_grid_has_the_published_widths(name: str) -> None:
    cfg = Config.fromfile(str(CONFIGS / name))
    for loop in (cfg.val_cfg, cfg.test_cfg):
        assert set(PUBLISHED_WIDTHS[name]) <= set(loop.widths)


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_lighting_perturbs_as_the_reference(name: str) -> None:
    """The reference adds ~0.01 grey levels; its uint8 cast makes that 0 or -1 per channel."""
    lighting = next(t for t in Config.fromfile(str(CONFIGS / name)).train_pipeline
                    if t.type == 'Lighting')
    transform = TRANSFORMS.build(lighting)
    # The increment's standard deviation per channel, in grey levels: far below one.
    spread = np.sqrt(((REFERENCE_EIGVEC * REFERENCE_EIGVAL * lighting.alphastd) ** 2).sum(1))
    assert spread.max() < 0.02
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image[0, 0], image[0, 1] = 0, 255  # the ends of the range
    shifts = set()
    for seed in range(20):
        np.random.seed(seed)
        alpha = np.random.randn(3) * lighting.alphastd  # as the reference draws it
        increment = REFERENCE_EIGVEC @ (alpha * REFERENCE_EIGVAL)
        expected = np.clip(image[..., ::-1] + increment, 0, 255).astype(np.uint8)[..., ::-1]
        np.random.seed(seed)
        out = transform(dict(img=image.copy()))['img']
        assert out.dtype == np.uint8 and np.array_equal(out, expected), seed
        shifts.update(np.unique(out.astype(int) - image).tolist())
    assert shifts == {-1, 0}


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory) -> Path:
    """Two classes of two generated images of different sizes each (CustomDataset's
    folder layout)."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    sizes = iter([(40, 40), (36, 54), (50, 38), (44, 44)])  # (h, w)
    for label in ('a', 'b'):
        (root / label).mkdir()
        for index in range(2):
            mmcv.imwrite(rng.integers(0, 256, (*next(sizes), 3), dtype=np.uint8),
                         str(root / label / f'{index}.png'))
    return root


def tiny(name: str, root: Path, work_dir: Path) -> Config:
    """The recipe on the generated images: 32-px crops, one iteration, a 2-width grid."""
    cfg = Config.fromfile(str(CONFIGS / name))
    train_pipeline = cfg.train_dataloader.dataset.pipeline
    train_pipeline[1].scale = SIZE
    test_pipeline = cfg.val_dataloader.dataset.pipeline
    test_pipeline[1].scale, test_pipeline[2].crop_size = SIZE + 4, SIZE
    for key, pipeline in (('train_dataloader', train_pipeline),
                          ('val_dataloader', test_pipeline),
                          ('test_dataloader', test_pipeline)):
        cfg[key] = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=key == 'train_dataloader'),
                        dataset=dict(type='CustomDataset', data_root=str(root),
                                     pipeline=pipeline))
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.param_scheduler.T_max = 1
    low = cfg.model.backbone.width_range[0]
    for loop in (cfg.val_cfg, cfg.test_cfg):
        loop.update(widths=(1.0, low), calibration=dict(num_batches=1))
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RECIPES))
def test_calibration_crops_as_the_test_pipeline(name: str) -> None:
    """The training crop becomes the recipe's own test-time resize and centre crop."""
    cfg = Config.fromfile(str(CONFIGS / name))
    calibration = deterministic_pipeline(cfg.train_dataloader.dataset.pipeline)
    assert [t['type'] for t in calibration] == [
        'LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    assert calibration[1:3] == cfg.val_dataloader.dataset.pipeline[1:3]


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_calibration_batches_have_the_training_crop_size(name: str, image_folder: Path,
                                                         tmp_path: Path) -> None:
    cfg = tiny(name, image_folder, tmp_path)
    draws = []
    for seed in (1, 2):  # the global seeds do not matter: nothing random is left
        np.random.seed(seed)
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            draws.append(list(build_calibration_loader(cfg.train_dataloader)))
    for batch in draws[0]:
        assert [tuple(image.shape) for image in batch['inputs']] == [(3, SIZE, SIZE)] * 4
    for a, b in zip(*draws, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a['inputs'], b['inputs']))


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_trains_one_iteration_then_evaluates_per_config(
        name: str, image_folder: Path, tmp_path: Path) -> None:
    runner = Runner.from_cfg(tiny(name, image_folder, tmp_path))
    model = runner.model
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    runner.train()
    assert runner.iter == 1
    moved = [k for k, v in model.backbone.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved  # the step ran
    table = json.loads((tmp_path / 'per_config.json').read_text())
    assert table['metric'] == 'accuracy/top1'
    records = table['records']
    low = RECIPES[name][0][0]
    assert {(r['width'], round(224 * r['scale'])) for r in records} == {
        (w, r) for w in (1.0, low) for r in (224, 192, 160, 128)}
    assert all('accuracy/top1' in r and 'accuracy/top5' in r and r['gflops'] > 0
               for r in records)
    assert (tmp_path / 'query_table.json').is_file()
    # Weight decay only on conv (not depthwise) and linear weights (train.py get_optimizer).
    decayed = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
               if group['weight_decay'] > 0 for p in group['params']}
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            expected = param_name == 'weight' and (
                isinstance(module, nn.Linear) or
                (isinstance(module, nn.Conv2d) and module.groups == 1))
            assert (id(param) in decayed) == expected, (type(module).__name__, param_name)


@pytest.mark.parametrize('recipe, backbone, head_channels, detector', [
    # The demo detector's backbone: SlimmableResNet-18 at half width.
    ('resnet18_mutual_in1k.py', dict(base_channels=32, stem_channels=32), 256,
     'demo/maskrcnn_mutual_r18_shapes.py'),
    # mmpretrain's and mmdet's MobileNetV2 name their blocks' layers differently.
    ('mobilenet-v2_mutual-w0.35_in1k.py', {}, 1280, 'maskrcnn_mutual_mbv2.py'),
])
def test_classifier_checkpoint_initializes_a_detector_backbone(
        recipe: str, backbone: dict, head_channels: int, detector: str, image_folder: Path,
        tmp_path: Path) -> None:
    """Pretrain here, then fine-tune: ``init_cfg`` Pretrained with ``prefix='backbone.'``."""
    cfg = tiny(f'classification/{recipe}', image_folder, tmp_path / 'cls')
    cfg.model.backbone.update(backbone)
    cfg.model.head.in_channels = head_channels
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # train only
    runner = Runner.from_cfg(cfg)
    runner.train()
    checkpoint = tmp_path / 'cls' / 'epoch_1.pth'
    trained = list(runner.model.backbone.state_dict().values())

    det_cfg = Config.fromfile(str(CONFIGS / detector))
    det_cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint),
                                           prefix='backbone.')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(det_cfg.model)
        model.init_weights()
    loaded = list(model.backbone.state_dict().values())
    assert len(loaded) == len(trained)
    differing = [i for i, (a, b) in enumerate(zip(loaded, trained)) if not torch.equal(a, b)]
    assert not differing, f'{len(differing)} backbone tensors did not come through'
