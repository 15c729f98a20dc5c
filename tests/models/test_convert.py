"""ImageNet checkpoint conversion: reference MutualNet and torchvision layouts onto our backbones.

Reference checkpoints are synthetic, with the reference key names and shapes (design notes,
section 6): convs without bias, batch norms with ``weight``/``bias`` and private running
statistics ``<bn>.bn.<k>.*`` (MobileNetV2's last batch norm is a stock one), ``module.``
prefixes, saved as ``{'model': state_dict}``.
"""
import copy
import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torchvision
from mmdet.registry import MODELS

import mutualnet_mm  # noqa: F401  (registers the backbones)
from mutualnet_mm.models.convert import convert_reference_state_dict, detect_arch
from tests.models.equivalence import randomize_norms

_TOOL = Path(__file__).parents[2] / 'tools' / 'convert_mutualnet_ckpt.py'
_spec = importlib.util.spec_from_file_location('convert_mutualnet_ckpt', _TOOL)
convert_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_tool)

RUNNING_STATS = ('running_mean', 'running_var', 'num_batches_tracked')
BACKBONES = {'mobilenet_v1': dict(type='SlimmableMobileNetV1'),
             'mobilenet_v2': dict(type='SlimmableMobileNetV2', out_indices=tuple(range(8))),
             'resnet50': dict(type='SlimmableResNet', depth=50)}
MOBILENET_V2_BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
                       (6, 320, 1))  # (expansion, channels, blocks)


class Layers:
    """Builds a torch-style state dict (convs, batch norms with running stats) from shapes."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.state_dict = {}

    def rand(self, *shape) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def conv(self, name: str, out_channels: int, in_channels: int, kernel: int) -> None:
        self.state_dict[f'{name}.weight'] = self.rand(out_channels, in_channels, kernel,
                                                      kernel) - 0.5

    def bn(self, name: str, channels: int) -> None:
        self.state_dict.update({
            f'{name}.weight': self.rand(channels) + 0.5, f'{name}.bias': self.rand(channels) - 0.5,
            f'{name}.running_mean': self.rand(channels) - 0.5,
            f'{name}.running_var': self.rand(channels) + 0.5,
            f'{name}.num_batches_tracked': torch.tensor(7)})

    def linear(self, name: str, out_features: int, in_features: int) -> None:
        self.state_dict[f'{name}.weight'] = self.rand(out_features, in_features) - 0.5
        self.state_dict[f'{name}.bias'] = self.rand(out_features) - 0.5


def as_reference(state_dict: dict, stock_norms=()) -> dict:
    """Reference layout of a state dict in reference names: batch norms other than
    ``stock_norms`` keep their running statistics in private per-width lists, and every
    key gets DataParallel's ``module.`` prefix."""
    generator = torch.Generator().manual_seed(1)
    reference = {}
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition('.')
        if leaf in RUNNING_STATS and module not in stock_norms:
            if leaf == 'running_mean':
                for index, channels in enumerate((value.numel(), value.numel() // 2)):
                    private = f'module.{module}.bn.{index}'
                    reference[f'{private}.running_mean'] = torch.rand(channels,
                                                                      generator=generator)
                    reference[f'{private}.running_var'] = torch.rand(channels,
                                                                     generator=generator)
                    reference[f'{private}.num_batches_tracked'] = torch.tensor(3)
            continue
        reference[f'module.{key}'] = value
    return reference


def reference_mobilenet_v1(seed: int = 0) -> dict:
    layers = Layers(seed)
    layers.conv('features.0.0', 32, 3, 3)
    layers.bn('features.0.1', 32)
    channels = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    in_channels = 32
    for index, out_channels in enumerate(channels, start=1):
        layers.conv(f'features.{index}.body.0', in_channels, 1, 3)
        layers.bn(f'features.{index}.body.1', in_channels)
        layers.conv(f'features.{index}.body.3', out_channels, in_channels, 1)
        layers.bn(f'features.{index}.body.4', out_channels)
        in_channels = out_channels
    layers.linear('classifier.0', 1000, 1024)
    return as_reference(layers.state_dict)


def reference_mobilenet_v2(seed: int = 0) -> dict:
    layers = Layers(seed)
    layers.conv('features.0.0', 32, 3, 3)
    layers.bn('features.0.1', 32)
    in_channels, index = 32, 1
    for expansion, out_channels, num_blocks in MOBILENET_V2_BLOCKS:
        for _ in range(num_blocks):
            hidden = in_channels * expansion
            convs = [(hidden, in_channels, 1)] if expansion != 1 else []  # expand
            convs += [(hidden, 1, 3), (out_channels, hidden, 1)]  # depthwise, project
            for position, (out, inp, kernel) in zip((0, 3, 6), convs):
                layers.conv(f'features.{index}.body.{position}', out, inp, kernel)
                layers.bn(f'features.{index}.body.{position + 1}', out)
            in_channels, index = out_channels, index + 1
    layers.conv('features.18.0', 1280, 320, 1)
    layers.bn('features.18.1', 1280)
    layers.linear('classifier.0', 1000, 1280)
    return as_reference(layers.state_dict, stock_norms=('features.18.1',))


def reference_resnet50(seed: int = 0) -> dict:
    layers = Layers(seed)
    layers.conv('features.0.0', 64, 3, 7)
    layers.bn('features.0.1', 64)
    in_channels, index = 64, 1
    for stage, num_blocks in enumerate((3, 4, 6, 3)):
        mid = 64 * 2 ** stage
        for block in range(num_blocks):
            body = f'features.{index}.body'
            layers.conv(f'{body}.0', mid, in_channels, 1)
            layers.bn(f'{body}.1', mid)
            layers.conv(f'{body}.3', mid, mid, 3)
            layers.bn(f'{body}.4', mid)
            layers.conv(f'{body}.6', 4 * mid, mid, 1)
            layers.bn(f'{body}.7', 4 * mid)
            if block == 0:
                layers.conv(f'features.{index}.shortcut.0', 4 * mid, in_channels, 1)
                layers.bn(f'features.{index}.shortcut.1', 4 * mid)
            in_channels, index = 4 * mid, index + 1
    layers.linear('classifier.0', 1000, 2048)
    return as_reference(layers.state_dict)


REFERENCES = {'mobilenet_v1': reference_mobilenet_v1, 'mobilenet_v2': reference_mobilenet_v2,
              'resnet50': reference_resnet50}


def is_dropped(key: str) -> bool:
    """Reference keys that have no place in a backbone: classifier, running statistics."""
    return key.startswith('module.classifier.') or key.rpartition('.')[2] in RUNNING_STATS


def convert_file(tmp_path: Path, checkpoint: dict, *args: str) -> Path:
    src, dst = tmp_path / 'src.pth', tmp_path / 'out' / 'converted.pth'
    torch.save(checkpoint, src)
    assert convert_tool.main([str(src), str(dst), *args]) == 0
    return dst


def load_pretrained(config: dict, checkpoint: Path) -> torch.nn.Module:
    backbone = MODELS.build(dict(config, init_cfg=dict(type='Pretrained',
                                                       checkpoint=str(checkpoint))))
    backbone.init_weights()
    backbone.eval()  # mmdet's MobileNetV2.train returns None
    return backbone


@pytest.mark.parametrize('arch', sorted(REFERENCES))
def test_reference_checkpoint_converts_and_loads(arch, tmp_path, capsys):
    reference = REFERENCES[arch]()
    assert all(key.startswith('module.') for key in reference)
    assert detect_arch(reference) == arch
    dst = convert_file(tmp_path, {'model': reference})
    output = capsys.readouterr().out
    assert f'{arch} layout (detected)' in output
    assert 'classifier.0.weight' in output and 'Recalibrate' in output
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['arch'] == arch

    backbone = load_pretrained(BACKBONES[arch], dst)
    # Reference and backbone list their convs and norms in the same order.
    sources = [key for key in reference if not is_dropped(key)]
    targets = [name for name, _ in backbone.named_parameters()]
    assert len(sources) == len(targets)
    for source, (target, param) in zip(sources, backbone.named_parameters()):
        assert torch.equal(param, reference[source]), f'{source} -> {target}'
    for name, buffer in backbone.named_buffers():
        if name.endswith('running_mean'):
            assert torch.equal(buffer, torch.zeros_like(buffer)), name
        elif name.endswith('running_var'):
            assert torch.equal(buffer, torch.ones_like(buffer)), name

    converted, dropped = convert_reference_state_dict(reference, arch)
    assert sorted(dropped) == sorted(key[len('module.'):] for key in reference
                                     if is_dropped(key))
    assert set(converted) == set(backbone.state_dict())


def test_wrong_arch_shape_and_key_errors_name_the_key(tmp_path):
    mobilenet_v2 = reference_mobilenet_v2()
    with pytest.raises(ValueError, match=r'not part of the mobilenet_v1 layout: '
                                         r'features\.2\.body\.6\.weight; .* are those of the '
                                         r'mobilenet_v2 layout'):
        convert_file(tmp_path, {'model': mobilenet_v2}, '--arch', 'mobilenet_v1')

    mobilenet_v1 = reference_mobilenet_v1()
    bad_shape = dict(mobilenet_v1, **{'module.features.5.body.3.weight': torch.zeros(9, 9, 1, 1)})
    with pytest.raises(ValueError, match=r'features\.5\.body\.3\.weight \(9, 9, 1, 1\) vs '
                                         r'layers\.4\.pw\.conv\.weight \(256, 256, 1, 1\)'):
        convert_reference_state_dict(bad_shape, 'mobilenet_v1')
    extra = dict(mobilenet_v1, **{'module.features.3.body.9.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r'not part of the mobilenet_v1 layout: '
                                         r'features\.3\.body\.9\.weight'):
        convert_reference_state_dict(extra, 'mobilenet_v1')
    missing = {k: v for k, v in mobilenet_v1.items() if k != 'module.features.2.body.1.bias'}
    with pytest.raises(ValueError, match=r'layers\.1\.dw\.bn\.bias \(source features\.2\.body\.1'
                                         r'\.bias\)'):
        convert_reference_state_dict(missing, 'mobilenet_v1')
    with pytest.raises(ValueError, match='unknown checkpoint layout'):
        detect_arch({'module.head.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='unknown arch'):
        convert_reference_state_dict(mobilenet_v1, 'mobilenet_v3')


# torchvision twins: the reference MobileNetV2 maps 1:1 onto torchvision's, ResNet-50 too.

@pytest.fixture(scope='module')
def torchvision_mobilenet_v2():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2()
    randomize_norms(model, seed=0)
    return model.eval()


@pytest.fixture(scope='module')
def torchvision_resnet50():
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    randomize_norms(model, seed=0)
    return model.eval()


def torchvision_stages(features: torch.nn.Sequential, ends, x: torch.Tensor) -> list:
    outputs, start = [], 0
    for end in ends:
        x = features[start:end](x)
        outputs.append(x)
        start = end
    return outputs


def mobilenet_v2_stage_outputs(model, x):
    ends, end = [], 1
    for _, _, num_blocks in MOBILENET_V2_BLOCKS:
        end += num_blocks
        ends.append(end)
    return torchvision_stages(model.features, ends + [end + 1], x)


def resnet_stage_outputs(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return torchvision_stages(
        torch.nn.Sequential(model.layer1, model.layer2, model.layer3, model.layer4), range(1, 5),
        x)


def reference_names_of_torchvision_mobilenet_v2(key: str) -> str:
    match = re.fullmatch(r'features\.(\d+)\.conv\.(.+)\.(\w+)', key)
    if match is None:
        return key.replace('classifier.1.', 'classifier.0.')
    block, layer, leaf = int(match.group(1)), match.group(2), match.group(3)
    positions = (('0.0', '0.1', '1', '2'), ('0', '1', '3', '4')) if block == 1 else (
        ('0.0', '0.1', '1.0', '1.1', '2', '3'), ('0', '1', '3', '4', '6', '7'))
    return f'features.{block}.body.{dict(zip(*positions))[layer]}.{leaf}'


def reference_names_of_torchvision_resnet(key: str) -> str:
    match = re.fullmatch(r'layer(\d)\.(\d+)\.(conv|bn|downsample\.)(\d)\.(\w+)', key)
    if match is None:
        return {'conv1': 'features.0.0', 'bn1': 'features.0.1', 'fc': 'classifier.0'}[
            key.rpartition('.')[0]] + '.' + key.rpartition('.')[2]
    stage, block, kind, number, leaf = match.groups()
    index = 1 + sum((3, 4, 6, 3)[:int(stage) - 1]) + int(block)
    if kind == 'downsample.':
        return f'features.{index}.shortcut.{number}.{leaf}'
    position = 3 * (int(number) - 1) + (kind == 'bn')
    return f'features.{index}.body.{position}.{leaf}'


def with_fresh_stats(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose batch norms have mean 0 / var 1 running statistics."""
    fresh = copy.deepcopy(model)
    for layer in fresh.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
    return fresh


def assert_same_outputs(ours, theirs, atol=1e-5):
    assert len(ours) == len(theirs)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, index
        scale = b.abs().max().item()
        assert scale > 1e-3, f'stage {index} is degenerate'
        difference = (a - b).abs().max().item()
        assert difference <= atol * max(1.0, scale), f'stage {index}: {difference} (max {scale})'


def test_reference_mobilenet_v2_matches_torchvision(torchvision_mobilenet_v2, tmp_path):
    tv_state = torchvision_mobilenet_v2.state_dict()
    reference = as_reference({reference_names_of_torchvision_mobilenet_v2(k): v
                              for k, v in tv_state.items()}, stock_norms=('features.18.1',))
    synthetic = reference_mobilenet_v2()
    assert {k: v.shape for k, v in reference.items()} == {k: v.shape
                                                         for k, v in synthetic.items()}
    dst = convert_file(tmp_path, {'model': reference})
    backbone = load_pretrained(BACKBONES['mobilenet_v2'], dst)
    backbone.set_width(1.0)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_same_outputs(backbone(x), mobilenet_v2_stage_outputs(
            with_fresh_stats(torchvision_mobilenet_v2), x))


def test_torchvision_mobilenet_v2_converts_with_its_running_stats(torchvision_mobilenet_v2,
                                                                  tmp_path, capsys):
    assert detect_arch(torchvision_mobilenet_v2.state_dict()) == 'torchvision_mobilenet_v2'
    dst = convert_file(tmp_path, torchvision_mobilenet_v2.state_dict(),
                       '--arch', 'torchvision_mobilenet_v2')
    assert 'kept from the source' in capsys.readouterr().out
    backbone = load_pretrained(BACKBONES['mobilenet_v2'], dst)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_same_outputs(backbone(x), mobilenet_v2_stage_outputs(torchvision_mobilenet_v2, x))


def test_reference_resnet50_matches_torchvision(torchvision_resnet50, tmp_path):
    reference = as_reference({reference_names_of_torchvision_resnet(k): v
                              for k, v in torchvision_resnet50.state_dict().items()})
    assert {k: v.shape for k, v in reference.items()} == {k: v.shape
                                                         for k, v in reference_resnet50().items()}
    dst = convert_file(tmp_path, {'model': reference}, '--arch', 'resnet50')
    backbone = load_pretrained(BACKBONES['resnet50'], dst)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_same_outputs(backbone(x), resnet_stage_outputs(
            with_fresh_stats(torchvision_resnet50), x))


def test_torchvision_resnet50_loads_without_conversion(torchvision_resnet50, tmp_path):
    state = torchvision_resnet50.state_dict()
    path = tmp_path / 'resnet50_torchvision.pth'
    torch.save(state, path)
    with pytest.raises(ValueError, match='no conversion needed'):
        detect_arch(state)
    backbone = load_pretrained(BACKBONES['resnet50'], path)
    ours = backbone.state_dict()
    assert set(ours) == {key for key in state if not key.startswith('fc.')}
    for key, value in ours.items():
        assert torch.equal(value, state[key]), key
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_same_outputs(backbone(x), resnet_stage_outputs(torchvision_resnet50, x))
