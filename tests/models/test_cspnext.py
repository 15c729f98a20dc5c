"""SlimmableCSPNeXt: RTMDet's backbone family (tiny, s, m, l) in one network."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mutualnet_mm  # noqa: F401  (registers the modules)
from mutualnet_mm.models import build_stock
from mutualnet_mm.ops import WidthSnapshot

#: mmdet's RTMDet configs, as installed with it.
RTMDET_CONFIGS = Path(__import__('mmdet').__file__).parent / '.mim' / 'configs' / 'rtmdet'
#: (width, depth) of each family member relative to RTMDet-l, and its block counts.
FAMILY = {'tiny': ((0.375, 0.167), (1, 1, 1, 1)), 's': ((0.5, 0.33), (1, 2, 2, 1)),
          'm': ((0.75, 0.67), (2, 4, 4, 2)), 'l': ((1.0, 1.0), (3, 6, 6, 3))}


def stock_backbone(size: str) -> dict:
    """mmdet's RTMDet-``size`` backbone config, without its initialization."""
    config = Config.fromfile(str(RTMDET_CONFIGS / f'rtmdet_{size}_8xb32-300e_coco.py'))
    backbone = copy.deepcopy(config.model.backbone.to_dict())
    backbone.pop('init_cfg', None)
    return backbone


@pytest.fixture(scope='module')
def backbone() -> torch.nn.Module:
    """RTMDet-l's backbone (its SyncBN as it is: nothing here runs it distributed)."""
    return build_stock(dict(stock_backbone('l'), type='SlimmableCSPNeXt'), 'mmdet')


@pytest.mark.parametrize('size', list(FAMILY))
def test_each_family_member_is_mmdets_own_backbone(backbone, size: str) -> None:
    (width, depth), blocks = FAMILY[size]
    expected = stock_backbone(size)
    assert backbone.stock_config(width, depth) == {
        **expected, 'widen_factor': pytest.approx(expected['widen_factor']),
        'deepen_factor': pytest.approx(expected['deepen_factor'])}
    backbone.set_depth(depth)
    backbone.set_width(width)
    assert tuple(backbone.get_submodule(f'stage{i}.{1 + (i == 4)}').blocks.active_blocks
                 for i in range(1, 5)) == blocks


def test_a_depth_outside_its_range_is_refused_by_name(backbone) -> None:
    assert backbone.depth_range == (0.167, 1.0)
    for depth in (0.1, 1.5):
        with pytest.raises(ValueError, match=rf'depth {depth:g} is outside the range '
                                             r'\[0.167, 1\] allowed by SlimmableCSPNeXt'):
            backbone.set_depth(depth)


def test_a_width_snapshot_restores_the_depth_too(backbone) -> None:
    backbone.set_depth(0.33)
    shallow = WidthSnapshot(backbone, 0.5)
    backbone.set_depth(1.0)
    backbone.set_width(1.0)
    shallow.restore()
    assert (backbone.depth, backbone.width) == (0.33, 0.5)
    assert backbone.stage2[1].blocks.active_blocks == 2
