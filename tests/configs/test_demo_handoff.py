"""The demo detector fine-tuned from the digits classifier demo, as a user writes it: the
fine-tune config, or ``--cfg-options`` filling the demo backbone's checkpoint."""
from pathlib import Path
from typing import Dict

import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mutualnet_mm.deploy import build_adaptive_model

CONFIGS = Path(__file__).parents[2] / 'configs'
DIGITS = CONFIGS / 'demo' / 'resnet18_mutual_digits.py'
DETECTOR = CONFIGS / 'demo' / 'maskrcnn_mutual_r18_shapes.py'
FINETUNE = CONFIGS / 'finetune' / 'maskrcnn_mutual_r18_shapes_from-digits.py'


def save_digits_checkpoint(path: Path) -> Dict[str, torch.Tensor]:
    """A digits classifier with random tensors (BN statistics too), saved as mmengine
    saves one; returns its backbone tensors by name."""
    torch.manual_seed(0)
    state_dict = build_adaptive_model(Config.fromfile(str(DIGITS))).state_dict()
    for tensor in state_dict.values():
        if tensor.is_floating_point():
            tensor.normal_()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'meta': {'epoch': 30}, 'state_dict': state_dict}, path)
    return {k.removeprefix('backbone.'): v for k, v in state_dict.items()
            if k.startswith('backbone.')}


def initialized_backbone(cfg: Config) -> Dict[str, torch.Tensor]:
    """The detector's backbone tensors after ``init_weights``, as the runner builds it."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(cfg.model)
        model.init_weights()
    return model.backbone.state_dict()


def assert_came_through(loaded: Dict[str, torch.Tensor],
                        trained: Dict[str, torch.Tensor]) -> None:
    assert loaded.keys() == trained.keys()
    differing = [k for k in loaded if not torch.equal(loaded[k], trained[k])]
    assert not differing, f'{len(differing)} backbone tensors did not come through'


def test_finetune_config_starts_from_the_digits_demo_checkpoint(tmp_path, monkeypatch) -> None:
    digits = Config.fromfile(str(DIGITS))
    cfg = Config.fromfile(str(FINETUNE))
    # The checkpoint the digits demo's documented run leaves last.
    expected = f'work_dirs/digits/epoch_{digits.train_cfg.max_epochs}.pth'
    assert digits.default_hooks.checkpoint.interval == digits.train_cfg.max_epochs
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=expected,
                                               prefix='backbone.')
    monkeypatch.chdir(tmp_path)
    trained = save_digits_checkpoint(tmp_path / expected)
    assert_came_through(initialized_backbone(cfg), trained)


@pytest.mark.parametrize('options', [
    ['model.backbone.init_cfg.checkpoint={}'],
    ['model.backbone.init_cfg.type=Pretrained', 'model.backbone.init_cfg.checkpoint={}'],
])
def test_cfg_options_fill_the_demo_backbone_checkpoint(options, tmp_path) -> None:
    checkpoint = tmp_path / 'epoch_30.pth'
    trained = save_digits_checkpoint(checkpoint)
    cfg = Config.fromfile(str(DETECTOR))
    # What tools/train.py does with --cfg-options KEY=VALUE ...
    cfg.merge_from_dict(dict(option.format(checkpoint).split('=', 1) for option in options))
    assert_came_through(initialized_backbone(cfg), trained)


def test_demo_without_a_checkpoint_initializes_as_from_scratch() -> None:
    cfg = Config.fromfile(str(DETECTOR))
    assert cfg.model.backbone.init_cfg.checkpoint is None
    torch.manual_seed(0)
    got = initialized_backbone(cfg)
    cfg.model.backbone.init_cfg = None  # mmdet ResNet's own initialization
    torch.manual_seed(0)
    want = initialized_backbone(cfg)
    assert_came_through(got, want)
    # Kaiming convolutions and zero-initialized last norms of the residual branches.
    assert got['layer1.0.conv1.weight'].std() > 0
    assert not got['layer1.0.bn2.weight'].any()
