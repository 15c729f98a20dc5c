"""Cost of a network as it runs: multiply-adds and parameters, per part.

Counted with forward hooks on the convolution and linear layers that actually run, so
slimmed layers count their active slices and the count follows the real input size
(and, for detectors, the real number of proposals).
"""
import math
from collections import defaultdict
from typing import Callable, Dict

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from ..ops import SlimmableConvNd


def _conv_cost(layer: _ConvNd, x: torch.Tensor, y: torch.Tensor) -> tuple:
    if isinstance(layer, SlimmableConvNd):
        out_c, in_per_group = layer.sliced_parameters(x)[0].shape[:2]
    else:
        out_c, in_per_group = layer.weight.shape[:2]
    kernel = math.prod(layer.kernel_size)
    macs = y.numel() * in_per_group * kernel
    params = out_c * in_per_group * kernel + (out_c if layer.bias is not None else 0)
    return macs, params


def _deconv_cost(layer: _ConvTransposeNd, x: torch.Tensor, y: torch.Tensor) -> tuple:
    # Weight layout (in, out / groups, *kernel): every input element meets out / groups
    # filters of kernel size; the active channels follow the input and the output.
    in_c, out_per_group = x.shape[1], y.shape[1] // layer.groups
    kernel = math.prod(layer.kernel_size)
    macs = x.numel() * out_per_group * kernel
    params = in_c * out_per_group * kernel + (y.shape[1] if layer.bias is not None else 0)
    return macs, params


def _linear_cost(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> tuple:
    in_f, out_f = x.shape[-1], y.shape[-1]
    rows = y.numel() // out_f
    return rows * in_f * out_f, in_f * out_f + (out_f if layer.bias is not None else 0)


def _norm_cost(layer: _BatchNorm, x: torch.Tensor, y: torch.Tensor) -> tuple:
    return 0, 2 * x.shape[1] if layer.affine else 0


def count_cost(model: nn.Module, run: Callable[[], object]) -> Dict[str, Dict[str, float]]:
    """Multiply-adds and parameters of the layers ``run()`` executes, per top-level part.

    Args:
        model: The model; parts are its direct children (backbone, neck, rpn_head, ...).
        run: Runs one forward pass of ``model`` on a batch of one sample.

    Returns:
        ``{'total': {'gmacs': ..., 'mparams': ...}, '<part>': {...}, ...}``: everything
        the pass ran (so ``run`` should process one sample; a detector's RoI heads count
        every proposal they process).
    """
    macs: Dict[str, int] = defaultdict(int)
    params: Dict[str, int] = defaultdict(int)
    seen = set()
    handles = []
    for name, layer in model.named_modules():
        if isinstance(layer, _ConvTransposeNd):
            cost_fn = _deconv_cost
        elif isinstance(layer, _ConvNd):
            cost_fn = _conv_cost
        elif isinstance(layer, nn.Linear):
            cost_fn = _linear_cost
        elif isinstance(layer, _BatchNorm):
            cost_fn = _norm_cost
        else:
            continue
        part = name.split('.')[0] or 'model'

        def hook(layer, inputs, output, part=part, cost_fn=cost_fn, name=name):
            layer_macs, layer_params = cost_fn(layer, inputs[0], output)
            macs[part] += layer_macs
            if name not in seen:
                seen.add(name)
                params[part] += layer_params
        handles.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    parts = {part: {'gmacs': macs[part] / 1e9, 'mparams': params[part] / 1e6}
             for part in sorted(set(macs) | set(params))}
    parts['total'] = {'gmacs': sum(macs.values()) / 1e9,
                      'mparams': sum(params.values()) / 1e6}
    return parts
