"""ONNX export of an exported (stock) model's backbone and neck, and a check with onnxruntime.

Uses ``torch.onnx.export`` with the TorchScript tracer (``dynamo=False``): the default
``torch.export``-based exporter of torch >= 2.9 needs ``onnxscript``. Height and width
(and the batch) are dynamic axes, so the graph runs at any input size.
"""
import os
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

OPSET_VERSION = 17


class BackboneNeck(nn.Module):
    """The feature extractor of a detector or recognizer: backbone, then neck if any."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.neck = getattr(model, 'neck', None)

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        features = self.backbone(inputs)
        if self.neck is not None:
            features = self.neck(features)
        return tuple(features) if isinstance(features, (list, tuple)) else (features,)


def export_backbone_neck_onnx(model: nn.Module, input_shape: Sequence[int],
                              path: str) -> str:
    """Export ``model``'s backbone and neck to ONNX (inputs ``inputs``, outputs ``feat<i>``).

    Args:
        model: A stock model (e.g. :func:`build_stock_model`), in eval mode.
        input_shape: The shape traced, ``(N, C, H, W)`` or ``(N, C, T, H, W)``.
        path: The ``.onnx`` file to write.

    Returns:
        ``path``.
    """
    extractor = BackboneNeck(model).eval()
    probe = torch.zeros(tuple(input_shape), device=next(model.parameters()).device)
    with torch.no_grad():
        num_outputs = len(extractor(probe))
    names = [f'feat{i}' for i in range(num_outputs)]
    spatial = {0: 'batch', probe.dim() - 2: 'height', probe.dim() - 1: 'width'}
    dynamic_axes = {'inputs': spatial, **{name: spatial for name in names}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.onnx.export(extractor, (probe,), path, input_names=['inputs'], output_names=names,
                      dynamic_axes=dynamic_axes, opset_version=OPSET_VERSION, dynamo=False)
    return path


def run_onnx(path: str, inputs: Tensor) -> List[np.ndarray]:
    """Run an exported graph with onnxruntime on the CPU."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {'inputs': inputs.detach().cpu().numpy()})


def onnx_difference(path: str, model: nn.Module, inputs: Tensor) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's features."""
    with torch.no_grad():
        expected = BackboneNeck(model).eval()(inputs)
    got = run_onnx(path, inputs)
    if len(got) != len(expected):
        raise ValueError(f'the ONNX graph has {len(got)} outputs, PyTorch {len(expected)}')
    return max(float(np.abs(g - e.cpu().numpy()).max()) for g, e in zip(got, expected))
