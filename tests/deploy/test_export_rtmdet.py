"""One RTMDet for the whole family: the mutual step trains (width, depth, scale) cohorts,
and each family point exports as mmdet's own RTMDet of that size, computing the same."""
import copy
from pathlib import Path

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mutualnet_mm.deploy import build_stock_model, export_config_and_weights
from mutualnet_mm.engine import MutualTrainStep, SubnetConfig
from mutualnet_mm.evaluation import count_cost
from mutualnet_mm.ops import get_depth, get_width, set_width

from ..models.equivalence import randomize_norms

RECIPES = Path(__file__).parents[2] / 'configs' / 'rtmdet'
#: recipe kind -> (our recipe, mmdet's config name prefix)
KINDS = {'rtmdet': ('rtmdet_l_mutual_coco.py', 'rtmdet'),
         'rtmdet-ins': ('rtmdet-ins_l_mutual_coco.py', 'rtmdet-ins')}
RTMDET_CONFIGS = Path(__import__('mmdet').__file__).parent / '.mim' / 'configs' / 'rtmdet'
#: (width, depth) of each RTMDet size relative to RTMDet-l.
FAMILY = {'tiny': (0.375, 0.167), 's': (0.5, 0.33), 'm': (0.75, 0.67), 'l': (1.0, 1.0)}


def plain_bn(value):
    """``value`` (a config) with plain BN for SyncBN: one CPU process."""
    if isinstance(value, dict):
        return {k: 'BN' if k == 'type' and v == 'SyncBN' else plain_bn(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_bn(v) for v in value)
    return value


def single_process(model_cfg: dict) -> dict:
    """``model_cfg`` with plain BN for SyncBN and no initialization of its parts."""
    cfg = plain_bn(model_cfg)
    for part in ('backbone', 'neck', 'bbox_head'):
        cfg[part].pop('init_cfg', None)
    return cfg


def build(kind: str) -> tuple:
    """A recipe's config (plain BN) and its model with random weights and norms."""
    cfg = Config.fromfile(str(RECIPES / KINDS[kind][0]))
    cfg.model = single_process(cfg.model.to_dict())
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(cfg.model))
    randomize_norms(model)
    return cfg, model


@pytest.fixture(scope='module')
def setup() -> tuple:
    return build('rtmdet')


@pytest.fixture(scope='module', params=list(KINDS))
def recipe(request) -> tuple:
    return request.param, *build(request.param)


def batch() -> dict:
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                             scale_factor=(1.0, 1.0), pad_shape=(64, 64)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 18.0, 60.0, 50.0]]),
            labels=torch.tensor([1, 7]))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, 64, 64), generator=generator, dtype=torch.uint8)
              for _ in samples]
    return dict(inputs=images, data_samples=samples)


def test_the_mutual_step_draws_width_depth_and_scale(setup) -> None:
    cfg, model = setup
    step = MutualTrainStep.from_config(cfg.train_cfg.mutual, model, seed=0)
    cohort = step.sampler.cohort(3)
    assert (cohort[0].width, cohort[0].depth) == (1.0, 1.0)
    assert (cohort[-1].width, cohort[-1].depth) == (0.375, 0.167)
    assert all(0.167 <= c.depth <= 1.0 for c in cohort) and '_d' in cohort[1].name
    before = copy.deepcopy(model.state_dict())
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4))
    log_vars = step(model, batch(), optim_wrapper, 3)
    assert torch.isfinite(log_vars['loss'])
    assert (get_width(model), get_depth(model)) == (1.0, 1.0)  # left at full size
    model.load_state_dict(before)


@pytest.mark.parametrize('size', list(FAMILY))
def test_each_family_point_exports_as_mmdets_own_rtmdet(recipe, size: str) -> None:
    kind, cfg, model = recipe
    width, depth = FAMILY[size]
    config = SubnetConfig(width, 1.0, depth=depth)
    stock_cfg, state_dict = export_config_and_weights(model, cfg, config)

    # the model mmdet's own config of that size builds, but for exp_on_reg (see the head)
    own = single_process(Config.fromfile(
        str(RTMDET_CONFIGS / f'{KINDS[kind][1]}_{size}_8xb32-300e_coco.py')).model.to_dict())
    exported = single_process(stock_cfg.model.to_dict())
    if kind == 'rtmdet':  # RTMDet-Ins has no exp_on_reg
        assert exported['bbox_head'].pop('exp_on_reg') is True
        assert own['bbox_head'].pop('exp_on_reg') is (size in ('m', 'l'))
    for key in ('backbone', 'neck', 'bbox_head', 'data_preprocessor', 'train_cfg',
                'test_cfg'):
        assert exported[key] == own[key], key

    # its weights load strictly into the network stock mmdet builds, which computes the same
    stock = build_stock_model(stock_cfg, state_dict)
    set_width(model, width, None, depth)
    model.eval()
    inputs = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(inputs, mode='tensor'), stock(inputs, mode='tensor')
    assert max((a - b).abs().max().item() for part in zip(ours, theirs)
               for a, b in zip(*part)) == 0

    # the cost counter counts the stock network's cost
    gflops = [count_cost(net, lambda net=net: net(inputs, mode='tensor'))['total']['gmacs']
              for net in (model, stock)]
    assert gflops[0] == pytest.approx(gflops[1])
