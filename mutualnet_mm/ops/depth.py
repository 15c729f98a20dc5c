"""Depth: stages whose leading blocks run, the second dimension of a configuration.

A network family that differs in depth as well as width (RTMDet's CSPNeXt: tiny, s, m, l)
builds each stage with ``max(round(n * deepen_factor), 1)`` blocks. A shallower member
is the deeper one with its trailing blocks left out, under the same names: a
:class:`DepthSequential` runs its first ``active_blocks`` and keeps the rest.
"""
from itertools import islice
from typing import Any, Optional

from torch import nn


class DepthSequential(nn.Sequential):
    """An ``nn.Sequential`` of blocks of which the first ``active_blocks`` run."""

    active_blocks: Optional[int] = None
    #: Attributes a configuration change sets (see :class:`~.slimmable.WidthSnapshot`).
    width_state = ('active_blocks',)

    @classmethod
    def from_sequential(cls, blocks: nn.Sequential) -> 'DepthSequential':
        """The depth-aware twin of ``blocks``, holding the same modules."""
        twin = cls.__new__(cls)
        twin.__dict__.update(blocks.__dict__)
        return twin

    def set_active_blocks(self, count: Optional[int]) -> None:
        """Run the first ``count`` blocks (``None``: all)."""
        if count is not None and not 0 < count <= len(self):
            raise ValueError(f'{type(self).__name__} has {len(self)} blocks; cannot run '
                             f'{count}')
        self.active_blocks = count

    def forward(self, x: Any) -> Any:
        count = len(self) if self.active_blocks is None else self.active_blocks
        for block in islice(self._modules.values(), count):
            x = block(x)
        return x
