"""Each supported mmdet detector builds, trains and predicts in both slimming modes."""
import os

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

from mutualnet_mm import set_width
from mutualnet_mm.models.detector_slimming import SUPPORTED_DETECTORS, slim_detector_config
from mutualnet_mm.ops import scale_channels

BASE_MODELS = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs', '_base_',
                           'models')
#: mmdet's base model config of each supported detector type.
DETECTORS = {'cascade-mask-rcnn_r50_fpn.py': 'CascadeRCNN', 'cascade-rcnn_r50_fpn.py':
             'CascadeRCNN', 'faster-rcnn_r50_fpn.py': 'FasterRCNN',
             'mask-rcnn_r50_fpn.py': 'MaskRCNN', 'retinanet_r50_fpn.py': 'RetinaNet',
             'rpn_r50_fpn.py': 'RPN'}
CHANNELS = 32
# Head arguments shrunk for a fast test (the backbone and neck are set explicitly).
SMALL = dict(in_channels=CHANNELS, feat_channels=CHANNELS, out_channels=CHANNELS,
             conv_out_channels=CHANNELS, fc_out_channels=64, num_classes=3, num=16,
             nms_pre=100, max_per_img=20)


def shrink(part):
    """``part`` with every size-like argument from :data:`SMALL` (recursively)."""
    if isinstance(part, list):
        return [shrink(item) for item in part]
    if not isinstance(part, dict):
        return part
    return {key: SMALL[key] if key in SMALL and isinstance(value, int) else shrink(value)
            for key, value in part.items()}


def tiny(name: str) -> dict:
    model = Config.fromfile(os.path.join(BASE_MODELS, name)).model.to_dict()
    model = {key: value if key in ('type', 'backbone', 'neck', 'data_preprocessor')
             else shrink(value) for key, value in model.items()}
    model['backbone'].update(depth=18, init_cfg=None)
    model['neck'].update(in_channels=[64, 128, 256, 512], out_channels=CHANNELS)
    return model


@pytest.fixture
def mmdet_scope():
    """Detectors build their parts (data preprocessor, RoI layers) in mmdet's scope."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def test_every_supported_detector_is_tested() -> None:
    assert set(DETECTORS.values()) == set(SUPPORTED_DETECTORS)


@pytest.mark.parametrize('mode', ['backbone', 'detector'])
@pytest.mark.parametrize('name', sorted(DETECTORS))
def test_supported_detector_trains_and_predicts_in_both_modes(name, mode, mmdet_scope):
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(slim_detector_config(tiny(name), mode)))
    assert type(model).__name__ == DETECTORS[name]
    with_mask = 'mask' in name
    packed = demo_mm_inputs(2, [[3, 64, 64], [3, 64, 48]], num_items=[2, 1], num_classes=3,
                            with_mask=with_mask)
    for width in (1.0, 0.5):
        set_width(model, width)
        model.train()
        loss, _ = model.parse_losses(model(**model.data_preprocessor(packed, True),
                                           mode='loss'))
        assert torch.isfinite(loss)
        model.eval()
        with torch.no_grad():
            inputs = model.data_preprocessor(packed, False)['inputs']
            pyramid = {f.shape[1] for f in model.extract_feat(inputs)}
            assert pyramid == {scale_channels(CHANNELS, width) if mode == 'detector'
                               else CHANNELS}
            predictions = model(**model.data_preprocessor(packed, False), mode='predict')
        assert len(predictions) == 2
        assert ('masks' in predictions[0].pred_instances) == with_mask


def test_unsupported_detectors_are_refused_by_name() -> None:
    fcos = Config.fromfile(os.path.join(BASE_MODELS, 'retinanet_r50_fpn.py')).model.to_dict()
    fcos['type'] = 'FCOS'
    for mode in ('backbone', 'detector'):
        with pytest.raises(ValueError, match=r"model.type 'FCOS' is not a supported detector"):
            slim_detector_config(fcos, mode)
