"""One mutual-learning iteration of the demo Mask R-CNN on a CUDA GPU: every pass of the
cohort runs there (rescaled batches, RoI sampling, masks) and the step trains."""
import copy
import math

import torch
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner

from mutualnet_mm.datasets import generate_coco_shapes
from mutualnet_mm.deploy import build_adaptive_model
from mutualnet_mm.engine import MutualTrainStep

from ..cuda import CUDA, skip_without_mmcv_cuda_ops
from ..deploy.demo import IMAGE_SIZE, tiny_demo_config

pytestmark = CUDA


def test_a_mutual_iteration_trains_on_cuda(tmp_path) -> None:
    skip_without_mmcv_cuda_ops()
    generate_coco_shapes(str(tmp_path), num_train=4, num_val=2, image_size=IMAGE_SIZE)
    cfg = tiny_demo_config(str(tmp_path))
    torch.manual_seed(0)
    model = build_adaptive_model(cfg, device='cuda').train()
    step = MutualTrainStep.from_config(
        dict(num_subnets=4, scales=(1.0, 0.75, 0.5), rescaler=dict(type='DetBatchRescaler')),
        model, seed=0)
    data = next(iter(Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=0)))
    weight = model.backbone.layer2[0].conv1.weight
    before = weight.detach().clone()
    log_vars = step(model, data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01)), 3)
    assert weight.is_cuda and not torch.equal(weight, before)
    assert log_vars and all(math.isfinite(float(value)) for value in log_vars.values())
