"""Slimmable image classifiers, registered in mmpretrain's MODELS.

Drop-ins for mmpretrain's own classes under the names the detection side uses, sharing
the detection twins' families (same argument rules, errors and defaults):
``SlimmableResNet`` is mmpretrain's ``ResNet`` at width 1.0 and at width ``w`` exactly
mmpretrain's ``ResNet`` with ``base_channels = stem_channels = make_divisible(64 w, 8)``;
``SlimmableMobileNetV2`` is mmpretrain's ``MobileNetV2(widen_factor=w)``;
``SlimmableMobileNetV1`` is this package's MobileNetV1 (no OpenMMLab library has one).
``SlimmableLinearClsHead`` takes whatever channels the backbone delivers; its class
outputs never shrink.

A classifier's checkpoint initializes the mmdet backbone of the same type with
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``: ResNet and
MobileNetV1 tensors carry the same names on both sides, and mmdet's
``SlimmableMobileNetV2`` renames mmpretrain's block layers (``conv.<i>``) as it loads.
"""
from operator import itemgetter

from mmpretrain.models.backbones import MobileNetV2 as PretrainMobileNetV2
from mmpretrain.models.backbones import ResNet as PretrainResNet
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS

from ..ops import convert_to_slimmable
from .backbones.mobilenet_v1 import MobileNetV1, SlimmableMobileNetV1
from .backbones.mobilenet_v2 import MobileNetV2Family
from .backbones.resnet import ResNetFamily
from .stock import InputTwin, drop_in_signature

MODELS.register_module(module=MobileNetV1)
MODELS.register_module(module=SlimmableMobileNetV1)


@MODELS.register_module(name='SlimmableResNet')
@drop_in_signature(PretrainResNet)
class SlimmableClsResNet(ResNetFamily, PretrainResNet):
    """mmpretrain ``ResNet`` whose width can be set at run time (see :class:`ResNetFamily`).

    Its arguments are mmpretrain's, which differ from mmdet's (``expansion``,
    ``drop_path_rate``; no ``dcn``, ``plugins`` or ``pretrained``); each reaches the stock
    twin as given.
    """

    stock_scope = 'mmpretrain'


@MODELS.register_module(name='SlimmableMobileNetV2')
@drop_in_signature(PretrainMobileNetV2)
class SlimmableClsMobileNetV2(MobileNetV2Family, PretrainMobileNetV2):
    """mmpretrain ``MobileNetV2`` whose width can be set at run time (see
    :class:`MobileNetV2Family`)."""

    stock_scope = 'mmpretrain'
    shortcut_flag = 'use_res_connect'


@MODELS.register_module()
@drop_in_signature(LinearClsHead)
class SlimmableLinearClsHead(LinearClsHead):
    """mmpretrain ``LinearClsHead`` that takes a slimmable backbone's features at any width.

    At a backbone width it computes the stock head built with ``in_channels`` equal to
    the channels the backbone's last output delivers; the class scores keep their size.

    Args:
        *args, **kwargs: mmpretrain ``LinearClsHead`` arguments (``num_classes``,
            ``in_channels`` at full width, ``loss``, ``topk``, ...).
    """

    input_twin = InputTwin('LinearClsHead', 'in_channels', 'backbone', itemgetter(-1))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        convert_to_slimmable(self)
        self.fc.slim_out = False  # the class scores


__all__ = ['SlimmableClsMobileNetV2', 'SlimmableClsResNet', 'SlimmableLinearClsHead']
