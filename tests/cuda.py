"""Marks of the tests that need a CUDA GPU (``pytest -m cuda``; ``.ci/gpu_check.sh``).

Without a GPU they are skipped: the CPU suite checks the same rules on the CPU.
"""
import pytest
import torch

#: ``pytestmark`` of a module whose tests all run on a CUDA GPU, convolutions and matrix
#: products in full float32 (``exact_float32`` in conftest.py).
CUDA = [pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU'),
        pytest.mark.usefixtures('exact_float32')]


def skip_without_mmcv_cuda_ops() -> None:
    """Skip the calling test unless mmcv was built with its CUDA ops (NMS, RoIAlign):
    mmdet's detection heads need them on a GPU (``MMCV_CUDA_OPS=1 bash
    .ci/gpu_check.sh`` builds them)."""
    from mmcv.ops import nms
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device='cuda')
    try:
        nms(boxes, torch.ones(1, device='cuda'), 0.5)
    except (RuntimeError, NotImplementedError, AssertionError) as error:
        pytest.skip(f'mmcv has no CUDA ops here ({type(error).__name__}: {error})')
