"""Convert ImageNet checkpoints to our backbones' names.

Layouts:

- ``mobilenet_v1``, ``mobilenet_v2``, ``resnet50``: the reference MutualNet checkpoints
  (``{'model': state_dict}`` saved from ``DataParallel``, so every key starts with
  ``module.``). Their batch norms keep running statistics only per training width, in a
  private ``<bn>.bn.<k>.*`` list that does not apply to other widths; they are dropped and the
  converted batch norms get fresh statistics (mean 0, variance 1), to be recalibrated before
  evaluation (the engine's BN calibration does it).
- ``torchvision_mobilenet_v2``: torchvision's MobileNetV2 (``features.<i>.conv.*``). Its running
  statistics are kept: they hold for the full width at the resolution it was trained at.

torchvision ResNets need no conversion: mmdet's ``ResNet``, and so ``SlimmableResNet``, use
torchvision's names.

Classifiers are dropped: the backbones have none.
"""
import re
from typing import Dict, List, Mapping, Tuple

import torch
from mmdet.models.backbones import MobileNetV2, ResNet
from mmdet.registry import MODELS
from torch import Tensor, nn

from .backbones import MobileNetV1  # also registers our backbones

#: Layout name -> our backbone config at full width.
ARCHS: Dict[str, dict] = {
    'mobilenet_v1': dict(type='SlimmableMobileNetV1'),
    'mobilenet_v2': dict(type='SlimmableMobileNetV2'),
    'resnet50': dict(type='SlimmableResNet', depth=50),
    'torchvision_mobilenet_v2': dict(type='SlimmableMobileNetV2'),
}
#: Layouts whose running statistics are kept.
KEEPS_RUNNING_STATS = ('torchvision_mobilenet_v2',)

_CLASSIFIERS = {'mobilenet_v1': 'classifier.0', 'mobilenet_v2': 'classifier.0',
                'resnet50': 'classifier.0', 'torchvision_mobilenet_v2': 'classifier.1'}
_RUNNING_STATS = ('running_mean', 'running_var', 'num_batches_tracked')
_PRIVATE_STATS = re.compile(r'^(.+)\.bn\.\d+\.(running_mean|running_var|num_batches_tracked)$')

# Keys that only one layout has: (required, absent).
_SIGNATURES = {
    'mobilenet_v1': (('features.13.body.3.weight',), ('features.14.body.0.weight',)),
    'mobilenet_v2': (('features.17.body.6.weight', 'features.18.0.weight'), ()),
    'resnet50': (('features.16.body.6.weight', 'features.1.shortcut.0.weight'),
                 ('features.17.body.0.weight',)),
    'torchvision_mobilenet_v2': (('features.17.conv.2.weight', 'features.18.0.weight'), ()),
}


def _mobilenet_v2_blocks() -> List[str]:
    """Our names of MobileNetV2's 17 inverted-residual blocks, in order."""
    return [f'layer{stage + 1}.{index}'
            for stage, (_, _, num_blocks, _) in enumerate(MobileNetV2.arch_settings)
            for index in range(num_blocks)]


def module_map(arch: str) -> Dict[str, str]:
    """Source module name -> our module name, for every conv and norm of layout ``arch``."""
    if arch not in ARCHS:
        raise ValueError(f'unknown arch {arch!r}; known: {sorted(ARCHS)}')
    if arch == 'mobilenet_v1':
        names = {'features.0.0': 'stem.conv', 'features.0.1': 'stem.bn'}
        for index in range(len(MobileNetV1.block_settings)):
            for source, target in (('0', 'dw.conv'), ('1', 'dw.bn'), ('3', 'pw.conv'),
                                   ('4', 'pw.bn')):
                names[f'features.{index + 1}.body.{source}'] = f'layers.{index}.{target}'
        return names
    if arch == 'resnet50':
        names = {'features.0.0': 'conv1', 'features.0.1': 'bn1'}
        blocks = [f'layer{stage + 1}.{index}'
                  for stage, num_blocks in enumerate(ResNet.arch_settings[50][1])
                  for index in range(num_blocks)]
        for index, block in enumerate(blocks, start=1):
            for source, target in (('body.0', 'conv1'), ('body.1', 'bn1'), ('body.3', 'conv2'),
                                   ('body.4', 'bn2'), ('body.6', 'conv3'), ('body.7', 'bn3'),
                                   ('shortcut.0', 'downsample.0'),
                                   ('shortcut.1', 'downsample.1')):
                names[f'features.{index}.{source}'] = f'{block}.{target}'
        return names
    # MobileNetV2, reference and torchvision layouts.
    names = {'features.0.0': 'conv1.conv', 'features.0.1': 'conv1.bn',
             'features.18.0': 'conv2.conv', 'features.18.1': 'conv2.bn'}
    reference = arch == 'mobilenet_v2'
    first = (('body.0', 'body.1', 'body.3', 'body.4') if reference
             else ('conv.0.0', 'conv.0.1', 'conv.1', 'conv.2'))
    expanded = (('body.0', 'body.1', 'body.3', 'body.4', 'body.6', 'body.7') if reference
                else ('conv.0.0', 'conv.0.1', 'conv.1.0', 'conv.1.1', 'conv.2', 'conv.3'))
    for index, block in enumerate(_mobilenet_v2_blocks(), start=1):
        sources = first if index == 1 else expanded
        targets = ('depthwise_conv', 'linear_conv') if index == 1 else (
            'expand_conv', 'depthwise_conv', 'linear_conv')
        targets = [f'{layer}.{part}' for layer in targets for part in ('conv', 'bn')]
        for source, target in zip(sources, targets):
            names[f'features.{index}.{source}'] = f'{block}.{target}'
    return names


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """``state_dict`` without the ``module.`` prefix that ``DataParallel`` adds."""
    return {key[len('module.'):] if key.startswith('module.') else key: value
            for key, value in state_dict.items()}


def unwrap_state_dict(checkpoint: Mapping) -> Dict[str, Tensor]:
    """The state dict of a checkpoint (``{'model': ...}``, ``{'state_dict': ...}`` or bare)."""
    for key in ('model', 'state_dict'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    state_dict = strip_module_prefix(checkpoint)
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise ValueError(f'not a state dict: {not_tensors[:5]} are not tensors')
    return state_dict


def detect_arch(state_dict: Mapping[str, Tensor]) -> str:
    """The layout of ``state_dict`` (a key of :data:`ARCHS`), read off its keys."""
    keys = set(strip_module_prefix(state_dict))
    found = [arch for arch, (required, absent) in _SIGNATURES.items()
             if keys.issuperset(required) and keys.isdisjoint(absent)]
    if len(found) == 1:
        return found[0]
    if {'conv1.weight', 'layer1.0.conv1.weight'} <= keys:
        raise ValueError('this checkpoint already uses torchvision / mmdet ResNet names: '
                         'load it directly with init_cfg=dict(type="Pretrained", '
                         'checkpoint=...), no conversion needed')
    raise ValueError(f'unknown checkpoint layout (first keys: {sorted(keys)[:6]}); known '
                     f'layouts: {sorted(ARCHS)}; name the layout explicitly to convert anyway')


def build_target(arch: str, device='meta') -> nn.Module:
    """Our backbone for layout ``arch``, at full width (on the meta device by default)."""
    with torch.device(device):
        return MODELS.build(ARCHS[arch])


def _fresh_running_stat(name: str, like: Tensor) -> Tensor:
    """Mean 0, variance 1, no batches tracked."""
    fill = 1 if name.endswith('running_var') else 0
    return torch.full(like.shape, fill, dtype=like.dtype)


def _report(problem: str, keys: List[str]) -> str:
    shown = '; '.join(keys[:5])
    return f'{len(keys)} {problem}: {shown}' + (' ...' if len(keys) > 5 else '')


def convert_reference_state_dict(state_dict: Mapping[str, Tensor],
                                 arch: str) -> Tuple[Dict[str, Tensor], List[str]]:
    """Map a layout-``arch`` state dict onto our backbone's names.

    Args:
        state_dict: Source state dict (``module.`` prefixes allowed).
        arch: Source layout, a key of :data:`ARCHS`.

    Returns:
        ``(converted, dropped_keys)``: the backbone's full state dict (every parameter
        from the source; running statistics from the source for
        :data:`KEEPS_RUNNING_STATS` layouts, fresh otherwise) and the source keys left out
        (classifier, running statistics).

    Raises:
        ValueError: a source key is not part of layout ``arch``, a shape does not fit the
            backbone, or a backbone tensor has no source; the message names the keys.
    """
    names = module_map(arch)
    keep_stats = arch in KEEPS_RUNNING_STATS
    target = build_target(arch).state_dict()
    classifier = _CLASSIFIERS[arch] + '.'
    converted, dropped, unknown, misfits = {}, [], [], []
    for key, value in strip_module_prefix(state_dict).items():
        module, _, leaf = key.rpartition('.')
        private = _PRIVATE_STATS.match(key)
        if key.startswith(classifier) or (private and private.group(1) in names):
            dropped.append(key)
            continue
        if module not in names:
            unknown.append(key)
            continue
        name = f'{names[module]}.{leaf}'
        if name not in target:
            unknown.append(key)
        elif leaf in _RUNNING_STATS and not keep_stats:
            dropped.append(key)
        elif value.shape != target[name].shape:
            misfits.append(f'{key} {tuple(value.shape)} vs {name} {tuple(target[name].shape)}')
        else:
            converted[name] = value
    if unknown:
        unknown.sort(key=lambda key: bool(_PRIVATE_STATS.match(key)))  # parameters first
        message = _report(f'keys are not part of the {arch} layout', unknown)
        try:
            detected = detect_arch(state_dict)
        except ValueError:
            detected = arch
        if detected != arch:
            message += f' (the keys are those of the {detected} layout)'
        raise ValueError(message)
    if misfits:
        raise ValueError(_report(f'shapes do not fit the {arch} backbone', misfits))
    missing = []
    for name, like in target.items():
        if name in converted:
            continue
        if name.rpartition('.')[2] in _RUNNING_STATS and not keep_stats:
            converted[name] = _fresh_running_stat(name, like)
        else:
            missing.append(name)
    if missing:
        sources = {ours: source for source, ours in names.items()}
        missing = [f'{name} (source {sources.get(name.rpartition(".")[0], "?")}.'
                   f'{name.rpartition(".")[2]})' for name in missing]
        raise ValueError(_report(f'backbone tensors have no source in the {arch} checkpoint',
                                 missing))
    return {name: converted[name] for name in target}, dropped


__all__ = ['ARCHS', 'KEEPS_RUNNING_STATS', 'build_target', 'convert_reference_state_dict',
           'detect_arch', 'module_map', 'strip_module_prefix', 'unwrap_state_dict']
