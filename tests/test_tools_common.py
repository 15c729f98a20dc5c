"""mutualnet_mm.tools_common: what the tools share."""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mutualnet_mm.tools_common import leave_distributed


def os_threads() -> int:
    return len(os.listdir('/proc/self/task'))


def test_leave_distributed_joins_the_gloo_threads(tmp_path) -> None:
    """No gloo worker thread may outlive the group into interpreter shutdown (SIGABRT)."""
    torch.nn.Linear(3, 2)(torch.ones(4, 3)).sum().backward()  # any lazy torch threads
    before = os_threads()
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    model = DistributedDataParallel(torch.nn.Linear(3, 2))
    model(torch.ones(4, 3)).sum().backward()
    dist.all_gather_object([None], {'state': 1})
    assert os_threads() > before  # the group's worker threads
    del model  # as the tools delete the runner: its DDP wrapper holds the group
    leave_distributed()
    assert not dist.is_initialized()
    assert os_threads() == before
