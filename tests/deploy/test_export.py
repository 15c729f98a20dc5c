"""Export of configurations as stock models: run by stock mmdet alone, equal to the adaptive model.

Three configurations of a random demo Mask R-CNN (64 px) are calibrated and exported; a
Python process that cannot import ``mutualnet_mm`` builds each exported model with stock
mmdet, runs it on the adaptive model's (preprocessed, rescaled) input tensor and through
its own test pipeline. Features and predictions must equal the adaptive model's at the
configuration, and the pipeline must produce the configuration's input size.
"""
import copy
import errno
import json
import os
import os.path as osp
import site
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mutualnet_mm.deploy import (
    build_adaptive_model,
    build_stock_model,
    export_backbone_neck_onnx,
    export_config_and_weights,
    export_subnet,
    load_adaptive_weights,
    onnx_difference,
    resolve_config,
    stock_model_config,
)
from mutualnet_mm.deploy import export as export_module
from mutualnet_mm.deploy.adaptive import task_rescaler
from mutualnet_mm.deploy.pipelines import scale_test_pipelines
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.evaluation import QueryTable
from mutualnet_mm.ops import scale_channels
from mutualnet_mm.reliability import fileio
from mutualnet_mm.reliability.fingerprint import weights_fingerprint

from .demo import REPO, STOCK_PRELUDE

# the last with decoupled widths: a backbone at 0.25 feeding a neck and heads at 0.5
CONFIGS = (SubnetConfig(1.0, 1.0), SubnetConfig(0.5, 0.75), SubnetConfig(0.25, 0.5),
           SubnetConfig(0.25, 1.0, head_width=0.5))
CALIBRATION_BATCHES = 2

# Runs in a process whose import path holds the environment's site-packages only: no
# repository, no editable install of mutualnet_mm.
STOCK_RUNNER = STOCK_PRELUDE + r'''
import torch
from mmdet.apis import init_detector
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

for directory in spec['exports']:
    cfg = Config.fromfile(directory + '/config.py')
    model = init_detector(cfg, directory + '/model.pth', device='cpu')
    saved = torch.load(directory + '/input.pth', weights_only=True)
    samples = [DetDataSample(metainfo=meta) for meta in saved['metainfo']]
    with torch.no_grad():
        features = model.extract_feat(saved['inputs'])
        predictions = model.predict(saved['inputs'], samples)
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        item = dataset[0]
        from_pipeline = model.test_step(pseudo_collate([item]))
    torch.save({
        'modules': sorted({type(m).__module__.split('.')[0] for m in model.modules()}),
        'features': list(features),
        'predictions': [{key: getattr(p.pred_instances, key)
                         for key in ('bboxes', 'scores', 'labels', 'masks')}
                        for p in predictions],
        'pipeline_img_shape': list(item['data_samples'].img_shape),
        'pipeline_detections': len(from_pipeline[0].pred_instances),
    }, directory + '/stock_outputs.pth')
print('stock runs done')
'''


def plain(value):
    """Metainfo as tensors, plain containers and scalars (``weights_only`` loadable)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def prediction_fields(prediction) -> dict:
    return {key: getattr(prediction.pred_instances, key)
            for key in ('bboxes', 'scores', 'labels', 'masks')}


@pytest.fixture(scope='module')
def val_batch(demo_cfg) -> dict:
    return next(iter(Runner.build_dataloader(copy.deepcopy(demo_cfg.val_dataloader))))


@pytest.fixture(scope='module')
def calibration_batches(demo_cfg) -> list:
    loader = Runner.build_dataloader(copy.deepcopy(demo_cfg.train_dataloader), seed=0)
    return [batch for _, batch in zip(range(CALIBRATION_BATCHES), loader)]


@pytest.fixture(scope='module')
def exports(demo_cfg, demo_checkpoint, val_batch, calibration_batches, tmp_path_factory):
    """Each configuration exported, with the adaptive model's input and outputs."""
    root = tmp_path_factory.mktemp('exports')
    model = build_adaptive_model(demo_cfg, demo_checkpoint)
    rescaler = task_rescaler(model, demo_cfg)
    results = {}
    for config in CONFIGS:
        directory = str(root / config.name)
        paths = export_subnet(model, demo_cfg, config, directory, calibration_batches,
                              CALIBRATION_BATCHES)
        with torch.no_grad():
            data = model.data_preprocessor(copy.deepcopy(val_batch), False)
            inputs, samples = rescaler(data['inputs'], data['data_samples'], config)
            features = model.extract_feat(inputs)
            predictions = model.predict(inputs, copy.deepcopy(samples))
        torch.save({'inputs': inputs,
                    'metainfo': [{k: plain(v) for k, v in s.metainfo.items()} for s in samples]},
                   osp.join(directory, 'input.pth'))
        results[config] = dict(directory=directory, paths=paths, inputs=inputs,
                               img_shape=list(samples[0].img_shape), features=features,
                               predictions=[prediction_fields(p) for p in predictions])
    return results


@pytest.fixture(scope='module')
def stock_outputs(exports, tmp_path_factory) -> dict:
    """Run every exported model in one process without mutualnet_mm."""
    spec = {'site': site.getsitepackages(),
            'exports': [exports[config]['directory'] for config in CONFIGS]}
    env = {key: value for key, value in os.environ.items() if not key.startswith('PYTHON')}
    env['OMP_NUM_THREADS'] = '1'
    run = subprocess.run([sys.executable, '-I', '-S', '-c', STOCK_RUNNER, json.dumps(spec)],
                         cwd=str(tmp_path_factory.mktemp('stock_cwd')), env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'stock runs done' in run.stdout
    return {config: torch.load(osp.join(exports[config]['directory'], 'stock_outputs.pth'),
                               weights_only=True) for config in CONFIGS}


def max_abs_difference(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS, ids=[c.name for c in CONFIGS])
def test_exported_model_runs_without_the_package_and_matches(config, exports, stock_outputs):
    adaptive, stock = exports[config], stock_outputs[config]
    assert 'mutualnet_mm' not in stock['modules']
    assert len(stock['features']) == len(adaptive['features']) == 5
    for got, want in zip(stock['features'], adaptive['features']):
        assert got.shape == want.shape
    assert max_abs_difference(stock['features'], adaptive['features']) <= 1e-4
    for got, want in zip(stock['predictions'], adaptive['predictions']):
        assert len(want['scores']) > 0
        assert torch.equal(got['labels'], want['labels'])
        assert max_abs_difference([got['bboxes'], got['scores']],
                                  [want['bboxes'], want['scores']]) <= 1e-4
        assert torch.equal(got['masks'], want['masks'])
    assert stock['pipeline_detections'] > 0


@pytest.mark.parametrize('config', CONFIGS, ids=[c.name for c in CONFIGS])
def test_exported_config_is_stock_with_the_configuration_channels_and_size(
        config, exports, stock_outputs, demo_cfg):
    text = open(exports[config]['paths']['config']).read()
    for word in ('mutualnet', 'Slimmable', 'Mutual', 'PerConfig', 'custom_imports'):
        assert word not in text
    stock_cfg = Config.fromfile(exports[config]['paths']['config'])
    base = 32 if config.width == 1.0 else round(32 * config.width)  # demo base: 32
    assert stock_cfg.model.backbone.type == 'ResNet'
    assert stock_cfg.model.backbone.base_channels == base
    assert stock_cfg.model.neck.in_channels == [base, 2 * base, 4 * base, 8 * base]
    head_width = config.width if config.head_width is None else config.head_width
    neck_channels = scale_channels(demo_cfg.model.neck.out_channels, head_width)
    assert stock_cfg.model.neck.out_channels == neck_channels
    assert stock_cfg.model.rpn_head.in_channels == neck_channels
    # the exported pipeline resizes the image to the size the adaptive model ran at
    size = round(64 * config.scale)
    assert exports[config]['img_shape'] == [size, size]
    assert stock_outputs[config]['pipeline_img_shape'] == [size, size]
    checkpoint = torch.load(exports[config]['paths']['checkpoint'], weights_only=True)
    assert checkpoint['meta']['mutualnet_mm']['width'] == config.width
    assert checkpoint['meta']['mutualnet_mm'].get('head_width') == config.head_width


def test_onnx_backbone_and_neck_match_pytorch(exports, tmp_path) -> None:
    config = CONFIGS[1]
    export = exports[config]
    stock_cfg = Config.fromfile(export['paths']['config'])
    state_dict = torch.load(export['paths']['checkpoint'], weights_only=True)['state_dict']
    stock = build_stock_model(stock_cfg, state_dict)
    path = export_backbone_neck_onnx(stock, export['inputs'].shape, str(tmp_path / 'bn.onnx'))
    assert onnx_difference(path, stock, export['inputs']) <= 1e-4
    # height and width are dynamic axes: another image size runs too
    other_size = torch.nn.functional.interpolate(export['inputs'][:1], size=(96, 64))
    assert onnx_difference(path, stock, other_size) <= 1e-4
    from mutualnet_mm.deploy.onnx_export import run_onnx
    got = run_onnx(path, export['inputs'])
    assert max(np.abs(g - w.numpy()).max() for g, w in zip(got, export['features'])) <= 1e-4


@pytest.mark.slow
def test_export_tool_picks_the_configuration_of_a_budget(demo_cfg, demo_checkpoint,
                                                         tmp_path) -> None:
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    checkpoint = work_dir / 'epoch_1.pth'
    checkpoint.write_bytes(open(demo_checkpoint, 'rb').read())
    entries = [dict(width=1.0, scale=1.0, gflops=2.0, mAP=0.3),
               dict(width=0.5, scale=0.75, gflops=0.5, mAP=0.2)]
    weights = weights_fingerprint(build_adaptive_model(demo_cfg, str(checkpoint)))
    torch.manual_seed(1)
    other = weights_fingerprint(build_adaptive_model(demo_cfg))  # another checkpoint
    table = work_dir / 'query_table.json'
    QueryTable(entries, 'mAP', checkpoint=other).save(str(table))
    config_path = str(tmp_path / 'demo.py')
    demo_cfg.dump(config_path)
    out = tmp_path / 'exported'
    command = [sys.executable, osp.join(REPO, 'tools', 'export_subnet.py'), config_path,
               str(checkpoint), '--budget', '1.0', '--out', str(out),
               '--calibration-batches', '1']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode != 0 and not out.exists()
    assert f"query table '{table}' belongs to another checkpoint: it was measured on weights " \
        f"{other}, checkpoint '{checkpoint}' has weights {weights}" in run.stderr
    QueryTable(entries, 'mAP', checkpoint=weights).save(str(table))
    run = subprocess.run(command + ['--onnx'], capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'exported w0.50_s0.75' in run.stdout
    assert sorted(os.listdir(out)) == ['backbone_neck.onnx', 'config.py', 'model.pth']
    assert Config.fromfile(str(out / 'config.py')).model.backbone.base_channels == 16


# ------------------------------------------------------------------------ errors
def test_resolve_config_errors(tmp_path) -> None:
    table = QueryTable([dict(width=0.5, scale=0.5, gflops=1.0, mAP=0.2)], 'mAP')
    table.save(str(tmp_path / 'query_table.json'))
    path = str(tmp_path / 'query_table.json')
    assert resolve_config(budget=3.0, query_table=path)[0] == SubnetConfig(0.5, 0.5)
    with pytest.raises(ValueError, match='cheapest needs 1'):
        resolve_config(budget=0.5, query_table=table)
    with pytest.raises(FileNotFoundError, match='query_table_latency_ms.json'):
        resolve_config(budget=10.0, budget_unit='ms',
                       query_table=str(tmp_path / 'query_table_latency_ms.json'))
    with pytest.raises(ValueError, match='gflops budgets, not ms'):
        resolve_config(budget=10.0, budget_unit='ms',
                       query_table=str(tmp_path / 'query_table.json'))
    with pytest.raises(ValueError, match='not both'):
        resolve_config(width=0.5, budget=1.0)
    with pytest.raises(ValueError, match='scales'):
        resolve_config(width=0.5, scale=0.0)
    with pytest.raises(ValueError, match="records no checkpoint fingerprint .* 'w.pth'"):
        resolve_config(budget=3.0, query_table=path, checkpoint='c' * 64,
                       checkpoint_name="checkpoint 'w.pth'")


def test_export_rejects_bad_width_scale_and_foreign_checkpoints(demo_cfg, demo_checkpoint,
                                                                tmp_path) -> None:
    model = build_adaptive_model(demo_cfg)
    with pytest.raises(ValueError, match='0.1'):
        export_config_and_weights(model, demo_cfg, SubnetConfig(0.1, 1.0))
    no_resize = copy.deepcopy(demo_cfg)
    for key in ('test_dataloader', 'val_dataloader'):
        no_resize[key].dataset.pipeline = [t for t in no_resize[key].dataset.pipeline
                                           if t.type != 'Resize']
    no_resize.test_pipeline = no_resize.test_dataloader.dataset.pipeline
    with pytest.raises(ValueError, match='no Resize'):
        export_config_and_weights(model, no_resize, SubnetConfig(1.0, 0.5))
    state_dict = torch.load(demo_checkpoint, weights_only=True)['state_dict']
    state_dict['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(11, 256)
    torch.save({'state_dict': state_dict}, str(tmp_path / 'other.pth'))
    with pytest.raises(ValueError, match=r"'roi_head.bbox_head.fc_cls.weight' has shape"):
        load_adaptive_weights(model, str(tmp_path / 'other.pth'))
    del state_dict['backbone.conv1.weight']
    torch.save({'state_dict': state_dict}, str(tmp_path / 'other.pth'))
    with pytest.raises(KeyError, match='backbone.conv1.weight'):
        load_adaptive_weights(model, str(tmp_path / 'other.pth'))


def directory_bytes(directory) -> dict:
    return {name: open(osp.join(directory, name), 'rb').read()
            for name in sorted(os.listdir(directory))}


class FullDisk:
    """``open`` whose files take 100 bytes, then fail with ENOSPC."""

    def __init__(self, path, mode='r', *args, **kwargs) -> None:
        self.file = open(path, mode, *args, **kwargs)

    def __enter__(self) -> 'FullDisk':
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()

    def write(self, data) -> int:
        self.file.write(bytes(data)[:100])
        raise OSError(errno.ENOSPC, 'No space left on device')


def test_a_re_export_replaces_the_directory_whole(demo_cfg, demo_checkpoint,
                                                  calibration_batches, tmp_path,
                                                  monkeypatch) -> None:
    model = build_adaptive_model(demo_cfg, demo_checkpoint)
    out = tmp_path / 'exported'
    export_subnet(model, demo_cfg, SubnetConfig(1.0, 1.0), str(out), calibration_batches, 1)
    old = directory_bytes(out)
    newer = SubnetConfig(1.0, 0.5)  # same width: mixed, the files would load together
    # Killed at the swap: the old export, whole; no staging directory left.
    with monkeypatch.context() as patch:
        patch.setattr(fileio, 'exchange_paths', killed)
        with pytest.raises(KeyboardInterrupt):
            export_subnet(model, demo_cfg, newer, str(out), calibration_batches, 1)
    assert directory_bytes(out) == old and os.listdir(tmp_path) == ['exported']
    # A full disk: an OSError naming the file and the disk, the old export whole.
    with monkeypatch.context() as patch:
        patch.setattr(export_module, 'open', FullDisk, raising=False)
        with pytest.raises(OSError) as error:
            export_subnet(model, demo_cfg, newer, str(out), calibration_batches, 1)
    assert error.value.errno == errno.ENOSPC
    assert error.value.strerror.startswith(
        f'could not save model.pth of the export {out} in {tmp_path}: No space left on '
        'device (disk full: free space there and export again); ')
    assert error.value.strerror.endswith(f'MiB free; the previous export in {out} is unchanged')
    assert directory_bytes(out) == old and os.listdir(tmp_path) == ['exported']
    paths = export_subnet(model, demo_cfg, newer, str(out), calibration_batches, 1)
    assert paths == {'config': str(out / 'config.py'), 'checkpoint': str(out / 'model.pth')}
    meta = torch.load(paths['checkpoint'], weights_only=True)['meta']['mutualnet_mm']
    resize = [t for t in Config.fromfile(paths['config']).test_pipeline
              if t['type'] == 'Resize']
    old_resize = [t for t in demo_cfg.test_pipeline if t['type'] == 'Resize']
    assert meta['scale'] == 0.5
    assert resize[0]['scale'] == tuple(round(v * 0.5) for v in old_resize[0]['scale'])


def killed(first: str, second: str) -> bool:
    raise KeyboardInterrupt  # the process dies as the new export is swapped in


def test_export_refuses_a_directory_of_other_files_before_calibrating(demo_cfg,
                                                                      tmp_path) -> None:
    out = tmp_path / 'models'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')

    class NotToBeRead:
        def __iter__(self):
            raise AssertionError('calibrated before the output was checked')

    with pytest.raises(ValueError, match=rf"'{out}' holds \['notes.txt'\], which it would "
                                         r'replace as a whole'):
        export_subnet(build_adaptive_model(demo_cfg), demo_cfg, SubnetConfig(0.5, 1.0),
                      str(out), NotToBeRead(), 1)
    assert os.listdir(out) == ['notes.txt']


def test_export_refuses_a_backbone_without_stock_class(demo_cfg) -> None:
    cfg = copy.deepcopy(demo_cfg)
    cfg.model.backbone = dict(type='SlimmableMobileNetV1')
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    model = build_adaptive_model(cfg)
    with pytest.raises(ValueError, match="'MobileNetV1' is a mutualnet_mm class"):
        stock_model_config(model, cfg.model, 0.5)


def test_video_recognizer_exports_as_stock_mmaction2() -> None:
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'x3d_mutual_demo.py'))
    torch.manual_seed(0)
    model = build_adaptive_model(cfg)
    config = SubnetConfig(0.5, 0.75, frames=4)
    stock_cfg, state_dict = export_config_and_weights(model, cfg, config)
    assert stock_cfg.model.backbone.type == 'X3D'
    assert stock_cfg.model.cls_head.type == 'X3DHead'
    assert stock_cfg.model.cls_head.in_channels < cfg.model.cls_head.in_channels
    pipeline = {t['type']: t for t in stock_cfg.test_dataloader.dataset.pipeline}
    assert pipeline['CenterCrop']['crop_size'] == round(cfg.image_size * 0.75)
    assert pipeline['SampleFrames']['clip_len'] == 4
    stock = build_stock_model(stock_cfg, state_dict)
    assert not any(type(m).__module__.startswith('mutualnet_mm') for m in stock.modules())
    clips = torch.randn(1, 1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    clips, _ = task_rescaler(model, cfg)(clips, [], config)
    with torch.no_grad():
        assert (model(clips, None, mode='tensor') - stock(clips, None, mode='tensor')).abs() \
            .max() <= 1e-4


def test_test_pipelines_scale_when_a_config_has_no_validation_loader():
    cfg = {'test_dataloader': {'dataset': {'pipeline': [
               {'type': 'LoadImageFromFile'}, {'type': 'Resize', 'scale': (128, 128)}]}},
           'val_dataloader': None}
    assert scale_test_pipelines(cfg, SubnetConfig(1.0, 0.5)) == 1
    assert cfg['test_dataloader']['dataset']['pipeline'][1]['scale'] == (64, 64)
