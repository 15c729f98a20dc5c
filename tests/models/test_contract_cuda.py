"""The contract of every registered slimmable module on a CUDA GPU: at every width it
computes its stock twin there too, in eval (kept slices) and train mode, and an
optimizer step on the GPU leaves no stale slices (the video backbones' 3D convolutions
included: they have contract cases too)."""
from typing import Any, Optional

import pytest
import torch
from torch import Tensor

from ..cuda import CUDA
from .equivalence import assert_matches_stock, flatten, max_difference
from .test_contract import CASES, _case_widths

pytestmark = CUDA


def on_cuda(inputs: Any) -> Any:
    """``inputs`` (a tensor or a tuple of them) on the GPU."""
    if isinstance(inputs, Tensor):
        return inputs.cuda()
    return type(inputs)(on_cuda(item) for item in inputs)


@pytest.mark.parametrize('case_name, width, depth', _case_widths())
def test_slimmable_contract_on_cuda(case_name: str, width: float,
                                    depth: Optional[float]) -> None:
    case = CASES[case_name]
    module = case.build().cuda()
    if depth is not None:
        module.set_depth(depth)
    make_inputs = lambda w: on_cuda(case.make_inputs(w))  # noqa: E731
    assert_matches_stock(module, width, make_inputs, case.forward)

    inputs = make_inputs(width)
    module.eval()
    with torch.no_grad():
        before = case.run(module, inputs)
    module.train()
    sum(out.square().mean() for out in flatten(case.run(module, inputs))).backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)  # a bounded step, at any size
    torch.optim.SGD(module.parameters(), lr=1.0).step()
    module.eval()
    with torch.no_grad():
        assert max_difference(case.run(module, inputs), before) > 1e-4  # the step shows
    assert_matches_stock(module, width, make_inputs, case.forward)
