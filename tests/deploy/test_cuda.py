"""The demo detector deployed on a CUDA GPU: ``AdaptiveInferencer`` calibrates there, and
its predictions at each configuration equal those of the configuration's exported stock
model on the GPU. Needs mmcv's CUDA ops (NMS, RoIAlign)."""
import copy

import torch
from mmengine.runner import Runner

from mutualnet_mm.deploy import AdaptiveInferencer, build_stock_model, export_config_and_weights
from mutualnet_mm.deploy.adaptive import task_rescaler
from mutualnet_mm.evaluation import QueryTable

from ..cuda import CUDA, skip_without_mmcv_cuda_ops
from .test_inferencer import assert_same_predictions

pytestmark = CUDA
TABLE = QueryTable([dict(width=1.0, scale=1.0, gflops=2.0, mAP=0.30),
                    dict(width=0.5, scale=0.75, gflops=0.6, mAP=0.20),
                    dict(width=0.25, scale=0.5, gflops=0.1, mAP=0.10)], 'mAP')


def test_inferencer_on_cuda_equals_the_exported_stock_models(demo_cfg, demo_checkpoint) -> None:
    skip_without_mmcv_cuda_ops()
    inferencer = AdaptiveInferencer(demo_cfg, demo_checkpoint, TABLE, calibrate=True,
                                    num_calibration_batches=2, device='cuda')
    batch = next(iter(Runner.build_dataloader(copy.deepcopy(demo_cfg.val_dataloader))))
    rescaler = task_rescaler(inferencer.model, demo_cfg)
    for config in inferencer.configs:
        got = inferencer.predict(copy.deepcopy(batch), config)
        # the model now holds the configuration's calibrated statistics: export them
        stock_cfg, state_dict = export_config_and_weights(inferencer.model, demo_cfg, config)
        stock = build_stock_model(stock_cfg, state_dict).cuda()
        with torch.no_grad():
            data = stock.data_preprocessor(copy.deepcopy(batch), False)
            inputs, samples = rescaler(data['inputs'], data['data_samples'], config)
            want = stock(inputs, samples, mode='predict')
        assert got[0].pred_instances.bboxes.is_cuda, config.name
        assert_same_predictions(got, want)
