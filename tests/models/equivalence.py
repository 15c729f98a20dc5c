"""Checks shared by the model tests: a slimmable module at a width equals its stock twin."""
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mutualnet_mm.ops import slice_state_dict


def randomize_norms(module: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial affine parameters and running statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, _BatchNorm):
                n = layer.num_features
                layer.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if layer.affine:
                    layer.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    layer.bias.copy_(torch.rand(n, generator=generator) - 0.5)


def flatten(output: Any) -> list:
    """The tensors of a (nested) module output, in order."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flatten(item)]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in flatten(output[key])]
    raise TypeError(f'unexpected output type {type(output).__name__}')


def max_difference(a: Any, b: Any) -> float:
    """Largest absolute difference between two outputs of the same structure."""
    flat_a, flat_b = flatten(a), flatten(b)
    assert len(flat_a) == len(flat_b), f'{len(flat_a)} vs {len(flat_b)} output tensors'
    for x, y in zip(flat_a, flat_b):
        assert x.shape == y.shape, f'shape {tuple(x.shape)} vs {tuple(y.shape)}'
    return max((x - y).abs().max().item() for x, y in zip(flat_a, flat_b))


def stock_twin(module: nn.Module, width: float) -> nn.Module:
    """The stock module at ``width``, loaded with ``module``'s sliced weights (strict), on
    ``module``'s device."""
    stock = module.build_stock(width)
    stock.load_state_dict(slice_state_dict(module, stock.state_dict()), strict=True)
    return stock.to(next(module.parameters()).device)


def assert_matches_stock(module: nn.Module, width: float, make_inputs: Callable[[float], Any],
                         forward: Callable[[nn.Module, Any], Any] = None,
                         atol: float = 1e-5) -> None:
    """``module`` at ``width`` computes what its stock twin computes, in eval and train mode.

    Args:
        module: A :class:`~mutualnet_mm.models.StockSlimmable`.
        width: The width to check.
        make_inputs: Builds the inputs for a width (e.g. a neck's input channels follow it).
        forward: How to call a module on the inputs (default ``m(inputs)``).
        atol: Allowed absolute difference.
    """
    forward = forward or (lambda m, x: m(x))
    module.set_width(width)
    stock = stock_twin(module, width)
    inputs = make_inputs(width)
    for training in (False, True):
        module.train(training)
        stock.train(training)
        with torch.no_grad():
            diff = max_difference(forward(module, inputs), forward(stock, inputs))
        assert diff <= atol, f'width {width}, training={training}: max difference {diff}'
