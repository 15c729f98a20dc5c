"""Which parts of an mmdet detector follow the width: the backbone only, or all of it.

``'backbone'`` (the reference work's detectors): the backbone slims, the FPN takes its
narrower features and keeps its own channels, the heads are stock. ``'detector'``: the
FPN, the RPN/dense head, the RoI extractors and the RoI box and mask heads slim too.
"""
import copy
from typing import Any, Dict, List

from mmdet.registry import MODELS

from . import backbones, heads, necks  # noqa: F401  (registers the slimmable types)

#: The values of ``mode``.
SLIMMING_MODES = ('backbone', 'detector')
#: Detector types (``model.type``) that are built and trained in both modes by the tests.
SUPPORTED_DETECTORS = ('CascadeRCNN', 'FasterRCNN', 'MaskRCNN', 'RPN', 'RetinaNet')
#: Heads of the detector itself (two-stage: ``rpn_head``; single-stage: ``bbox_head``).
_DETECTOR_HEADS = ('rpn_head', 'bbox_head')
#: Parts of ``roi_head`` (each a config or, in cascades, a list of configs).
_ROI_HEAD_PARTS = ('bbox_roi_extractor', 'bbox_head', 'mask_roi_extractor', 'mask_head')
_PREFIX = 'Slimmable'


def slim_detector_config(model_cfg: Dict[str, Any], mode: str) -> Dict[str, Any]:
    """Turn a stock mmdet detector config into a slimmable one.

    Supported detectors: :data:`SUPPORTED_DETECTORS` (Faster/Mask R-CNN, Cascade
    (Mask) R-CNN, RPN, RetinaNet) with a ResNet or MobileNetV2 backbone and an FPN.
    Stock type names become their registered slimmable twins (``ResNet`` ->
    ``SlimmableResNet``, ``FPN`` -> ``SlimmableFPN``, ``RPNHead`` -> ``SlimmableRPNHead``,
    ...); every other argument is kept. Parts already slimmable keep their type.

    Args:
        model_cfg: The ``model`` config of a detector (not modified).
        mode: ``'backbone'`` or ``'detector'`` (see the module docstring).

    Returns:
        A new config.

    Raises:
        ValueError: ``mode`` is unknown, the detector type is not supported, or a part
            that must slim (the backbone, the neck, and in ``'detector'`` mode the heads)
            has no slimmable twin; the message names the part.
    """
    if mode not in SLIMMING_MODES:
        raise ValueError(f'mode must be one of {SLIMMING_MODES}, got {mode!r}')
    detector = str(model_cfg.get('type', '')).rpartition('.')[2]
    if detector not in SUPPORTED_DETECTORS:
        raise ValueError(f'model.type {model_cfg.get("type")!r} is not a supported detector; '
                         f'slim_detector_config supports {SUPPORTED_DETECTORS}')
    cfg = copy.deepcopy(model_cfg)
    cfg['backbone'] = _slimmable(cfg['backbone'], 'backbone')
    if cfg.get('neck') is not None:
        cfg['neck'] = _slimmable(cfg['neck'], 'neck', slim_outputs=mode == 'detector')
    if mode == 'backbone':
        return cfg
    for key in _DETECTOR_HEADS:
        if cfg.get(key) is not None:
            cfg[key] = _slimmable(cfg[key], key)
    roi_head = cfg.get('roi_head')
    for key in _ROI_HEAD_PARTS if roi_head is not None else ():
        if roi_head.get(key) is not None:
            roi_head[key] = _slimmable(roi_head[key], f'roi_head.{key}')
    return cfg


def _slimmable(part: Any, where: str, **overrides) -> Any:
    """The config (or list of configs) ``part`` with slimmable types."""
    if isinstance(part, (list, tuple)):
        return [_slimmable(item, f'{where}[{i}]', **overrides) for i, item in enumerate(part)]
    if not isinstance(part.get('type'), str):
        raise ValueError(f'{where} needs a registered type name, got {part.get("type")!r}')
    scope, _, name = part['type'].rpartition('.')
    if not name.startswith(_PREFIX):
        name = _PREFIX + name
    if MODELS.get(name) is None:
        raise ValueError(f'{where} of type {part["type"]!r} has no slimmable twin; '
                         f'slimmable types: {_slimmable_types()}')
    part['type'] = f'{scope}.{name}' if scope else name
    part.update(overrides)
    return part


def _slimmable_types() -> List[str]:
    return sorted(name for name in MODELS.module_dict if name.startswith(_PREFIX))
