"""The MobileNet recipes reproduce the reference's published MFLOPs per configuration."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mutualnet_mm
from mutualnet_mm.evaluation.cost import count_cost

CONFIGS = Path(__file__).parents[2] / 'configs/classification'
# Published query tables (shared/docs/mutualnet.md section 5): (width, resolution) -> MFLOPs.
PUBLISHED = {
    'mobilenet-v1_mutual_in1k.py': {
        (1.0, 224): 569, (1.0, 192): 418, (0.85, 192): 309, (0.85, 160): 215,
        (0.7, 160): 146, (0.5, 160): 76, (0.35, 160): 41, (0.25, 160): 21, (0.25, 128): 13},
    'mobilenet-v2_mutual_in1k.py': {
        (1.0, 224): 300, (0.85, 224): 254, (1.0, 192): 221, (0.8, 192): 164,
        (0.75, 160): 107, (0.85, 128): 84, (0.7, 128): 57},
}
# MobileNetV1 0.25 at 128 counts 13.6 MFLOPs; Google's MobileNet table lists the same
# network at 14 million multiply-adds, the reference's table 13: a rounding, not a
# different network, so this entry is held to the nearest whole MFLOP.
ROUNDED = {('mobilenet-v1_mutual_in1k.py', (0.25, 128))}


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_per_config_cost_matches_the_reference(name: str) -> None:
    cfg = Config.fromfile(str(CONFIGS / name))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).eval()
    for (width, resolution), published in PUBLISHED[name].items():
        mutualnet_mm.set_width(model, width)
        image = torch.zeros(1, 3, resolution, resolution)
        cost = count_cost(model, lambda image=image: model(image, mode='tensor'))
        mflops = cost['total']['gmacs'] * 1e3
        if (name, (width, resolution)) in ROUNDED:
            assert abs(mflops - published) <= 1.0, (width, resolution, mflops)
        else:
            assert abs(mflops / published - 1) <= 0.01, (width, resolution, mflops, published)
