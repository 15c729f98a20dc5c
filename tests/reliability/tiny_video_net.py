"""A tiny slimmable clip classifier for process-level tests (DDP, calibration).

Built from the package's slimmable layers, without OpenMMLab models, so that a loss is a
per-sample mean and, without batch norm, the gradient of a batch does not depend on how
the batch is split across processes.
"""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from mutualnet_mm.ops import (
    Slimmable,
    SlimmableBatchNorm3d,
    SlimmableConv3d,
    SlimmableLinear,
    scale_channels,
)

NUM_CLASSES = 4
CLIP_SHAPE = (1, 3, 4, 16, 16)  # views, channels, frames, height, width


class TinyVideoNet(Slimmable, BaseModel):
    """conv3d -> [bn] -> relu -> conv3d (stride 2) -> relu -> mean -> linear.

    Inputs are ``(N, views, C, T, H, W)`` batches (as ``VideoBatchRescaler`` expects),
    data samples a tensor of labels. Each forward records ``(width, (T, H, W))``.
    """

    def __init__(self, with_bn: bool = False) -> None:
        BaseModel.__init__(self)
        self.init_width_range((0.25, 1.0))
        self.conv1 = SlimmableConv3d(3, 16, 3, padding=1)
        self.conv1.slim_in = False
        self.bn1 = SlimmableBatchNorm3d(16) if with_bn else None
        self.conv2 = SlimmableConv3d(16, 32, 3, stride=2, padding=1)
        self.fc = SlimmableLinear(32, NUM_CLASSES)
        self.fc.slim_out = False
        self.passes: List[Tuple[float, Tuple[int, ...]]] = []

    def channel_plan(self, width: float) -> Dict[str, int]:
        return {'conv1': scale_channels(16, width), 'conv2': scale_channels(32, width)}

    def stock_config(self, width: float) -> dict:
        return dict(channels=(scale_channels(16, width), scale_channels(32, width)))

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'tensor'):
        self.passes.append((round(self.width, 6), tuple(inputs.shape[-3:])))
        x = self.conv1(inputs.flatten(0, 1))
        if self.bn1 is not None:
            x = self.bn1(x)
        x = F.relu(self.conv2(F.relu(x)))
        logits = self.fc(x.mean((2, 3, 4)))
        if mode == 'loss':
            return {'loss_cls': F.cross_entropy(logits, data_samples)}
        return logits


def make_batches(num: int, batch_size: int, seed: int = 0) -> List[dict]:
    """``num`` batches of random clips with labels, as a dataloader would yield them."""
    generator = torch.Generator().manual_seed(seed)
    return [dict(inputs=torch.randn(batch_size, *CLIP_SHAPE, generator=generator),
                 data_samples=torch.randint(NUM_CLASSES, (batch_size,), generator=generator))
            for _ in range(num)]


def shard(batch: dict, rank: int, world_size: int) -> dict:
    """The part of a global batch that process ``rank`` gets (contiguous, equal parts)."""
    size = len(batch['data_samples']) // world_size
    return {key: value[rank * size:(rank + 1) * size] for key, value in batch.items()}


def build(with_bn: bool = False, seed: int = 0) -> TinyVideoNet:
    torch.manual_seed(seed)
    return TinyVideoNet(with_bn)
