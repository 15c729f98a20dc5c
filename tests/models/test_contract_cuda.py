"""The contract of every registered slimmable module on a CUDA GPU: at every width it
computes its stock twin there too, in eval (kept slices) and train mode, and an
optimizer step on the GPU leaves no stale slices. The video backbones (3D convolutions)
are checked against their stock twins as well."""
from typing import Any

import pytest
import torch
from torch import Tensor

from mutualnet_mm.models.backbones import SlimmableResNet3dSlowFast, SlimmableX3D

from ..cuda import CUDA
from .equivalence import assert_matches_stock, flatten, max_difference, randomize_norms
from .test_contract import CASES, _case_widths
from .test_video_backbones import WIDTHS, X3D_ARGS, clip, slowfast_args

pytestmark = CUDA


def on_cuda(inputs: Any) -> Any:
    """``inputs`` (a tensor or a tuple of them) on the GPU."""
    if isinstance(inputs, Tensor):
        return inputs.cuda()
    return type(inputs)(on_cuda(item) for item in inputs)


@pytest.mark.parametrize('case_name, width', _case_widths())
def test_slimmable_contract_on_cuda(case_name: str, width: float) -> None:
    case = CASES[case_name]
    module = case.build().cuda()
    make_inputs = lambda w: on_cuda(case.make_inputs(w))  # noqa: E731
    assert_matches_stock(module, width, make_inputs, case.forward)

    inputs = make_inputs(width)
    module.eval()
    with torch.no_grad():
        before = case.run(module, inputs)
    module.train()
    sum(out.square().mean() for out in flatten(case.run(module, inputs))).backward()
    torch.optim.SGD(module.parameters(), lr=0.01).step()
    module.eval()
    with torch.no_grad():
        assert max_difference(case.run(module, inputs), before) > 1e-4  # the step shows
    assert_matches_stock(module, width, make_inputs, case.forward)


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('build', [lambda: SlimmableX3D(**X3D_ARGS),
                                   lambda: SlimmableResNet3dSlowFast(**slowfast_args())],
                         ids=['X3D', 'SlowFast'])
def test_video_backbones_match_stock_on_cuda(build, width: float) -> None:
    torch.manual_seed(0)
    model = build()
    randomize_norms(model)
    assert_matches_stock(model.cuda(), width, lambda w: clip(w).cuda())
