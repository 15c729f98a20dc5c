"""A classifier configuration exports as a stock mmpretrain model that runs without us."""
import json
import os
import os.path as osp
import site
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mutualnet_mm.deploy.adaptive import build_adaptive_model, task_rescaler
from mutualnet_mm.deploy.export import export_subnet
from mutualnet_mm.engine import SubnetConfig

from .demo import REPO, STOCK_PRELUDE

# Runs with the environment's site-packages only: no repository, no mutualnet_mm.
STOCK_RUNNER = STOCK_PRELUDE + r'''
import torch
from mmpretrain.apis import init_model
model = init_model(spec['dir'] + '/config.py', spec['dir'] + '/model.pth', device='cpu')
saved = torch.load(spec['dir'] + '/inputs.pth', weights_only=True)
with torch.no_grad():
    logits = model(saved['inputs'], mode='tensor')
    normalized = model.data_preprocessor(dict(inputs=saved['images']), False)['inputs']
torch.save({'logits': logits, 'normalized': normalized,
            'modules': sorted({type(m).__module__.split('.')[0] for m in model.modules()})},
           spec['dir'] + '/stock.pth')
print('stock run done')
'''


@pytest.mark.slow
def test_classifier_configuration_exports_as_stock_mmpretrain(tmp_path) -> None:
    cfg = Config.fromfile(osp.join(REPO, 'configs/classification/resnet18_mutual_in1k.py'))
    torch.manual_seed(0)
    model = build_adaptive_model(cfg)
    config = SubnetConfig(0.5, 160 / 224)
    generator = torch.Generator().manual_seed(0)
    calibration = [dict(inputs=[torch.randint(0, 256, (3, 64, 64), generator=generator,
                                              dtype=torch.uint8) for _ in range(4)],
                        data_samples=None) for _ in range(2)]
    paths = export_subnet(model, cfg, config, str(tmp_path), calibration, 2)

    stock_cfg = Config.fromfile(paths['config'])
    assert stock_cfg.model.backbone.type == 'ResNet'
    assert stock_cfg.model.backbone.base_channels == 32
    assert stock_cfg.model.head.type == 'LinearClsHead'
    assert stock_cfg.model.head.in_channels == 256
    assert stock_cfg.train_cfg.type == 'EpochBasedTrainLoop'
    pipeline = {t['type']: t for t in stock_cfg.test_dataloader.dataset.pipeline}
    assert pipeline['ResizeEdge']['scale'] == 183 and pipeline['CenterCrop']['crop_size'] == 160

    images = [torch.randint(0, 256, (3, 224, 224), generator=generator, dtype=torch.uint8)
              for _ in range(2)]
    with torch.no_grad():
        normalized = model.data_preprocessor(dict(inputs=images), False)['inputs']
        inputs, _ = task_rescaler(model, cfg)(normalized, None, config)
        adaptive = model(inputs, mode='tensor')
    torch.save({'images': images, 'inputs': inputs}, tmp_path / 'inputs.pth')
    env = {key: value for key, value in os.environ.items() if not key.startswith('PYTHON')}
    env['OMP_NUM_THREADS'] = '1'
    spec = {'site': site.getsitepackages(), 'dir': str(tmp_path)}
    run = subprocess.run([sys.executable, '-I', '-S', '-c', STOCK_RUNNER, json.dumps(spec)],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    stock = torch.load(tmp_path / 'stock.pth', weights_only=True)
    assert 'mutualnet_mm' not in stock['modules']
    assert stock['logits'].shape == adaptive.shape == (2, 1000)
    assert (stock['logits'] - adaptive).abs().max() <= 1e-4
    # Both normalize with the config's top-level data_preprocessor (mmpretrain's layout).
    torch.testing.assert_close(stock['normalized'], normalized)
    assert normalized.abs().max() < 3  # normalized (mean 123.675, std 58.395, ...)
