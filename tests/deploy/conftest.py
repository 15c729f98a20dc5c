"""Fixtures of the deploy tests: a random demo Mask R-CNN at 64 px and its tiny dataset."""
import pytest
import torch
from mmengine.config import Config

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.deploy import build_adaptive_model

from .demo import IMAGE_SIZE, tiny_demo_config


@pytest.fixture(scope='session')
def data_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('coco_shapes'))
    generate_coco_shapes(root, num_train=4, num_val=2, image_size=IMAGE_SIZE)
    return root


@pytest.fixture(scope='session')
def demo_cfg(data_root) -> Config:
    return tiny_demo_config(data_root)


@pytest.fixture(scope='session')
def demo_checkpoint(demo_cfg, tmp_path_factory) -> str:
    """A randomly initialized adaptive model, saved as an mmengine checkpoint."""
    torch.manual_seed(0)
    model = build_adaptive_model(demo_cfg)
    path = str(tmp_path_factory.mktemp('adaptive') / 'epoch_1.pth')
    torch.save({'meta': {'dataset_meta': {'classes': list(demo_cfg.classes)}},
                'state_dict': model.state_dict()}, path)
    return path
