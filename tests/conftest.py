"""Every test starts from the registry scope the session started with, and without the
visualizers of earlier tests: none leaks. CUDA tests run in full float32."""
from collections import OrderedDict
from typing import Iterator

import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.visualization import Visualizer


@pytest.fixture(scope='session')
def session_default_scopes() -> OrderedDict:
    return DefaultScope._instance_dict.copy()


@pytest.fixture(autouse=True)
def restore_default_scope(session_default_scopes: OrderedDict) -> Iterator[None]:
    # A test (or a module fixture) that calls init_default_scope('mmaction') would
    # otherwise send the next test's mmdet builds (in the same process) to mmaction's
    # registries.
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(session_default_scopes)


def _visualizer_classes(cls: type = Visualizer) -> Iterator[type]:
    yield cls
    for subclass in cls.__subclasses__():
        yield from _visualizer_classes(subclass)


@pytest.fixture(autouse=True)
def fresh_visualizers(monkeypatch) -> None:
    # Runners name their visualizer after the config file and the second they start;
    # two tool runs in one process within a second (same config name) would share an
    # earlier test's visualizer, which may be of another task's class (seen: mmdet's
    # DetVisualizationHook handed a plain Visualizer).
    for cls in _visualizer_classes():
        monkeypatch.setattr(cls, '_instance_dict', OrderedDict())


@pytest.fixture
def exact_float32() -> Iterator[None]:
    """Full float32 convolutions and matrix products on CUDA (no TF32) while a test runs:
    a slimmable module and its stock twin then compare to the CPU suite's tolerances."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
