"""Every test starts from the registry scope it found: none leaks into the next one."""
from typing import Iterator

import pytest
from mmengine.registry import DefaultScope


@pytest.fixture(autouse=True)
def restore_default_scope() -> Iterator[None]:
    # A test that calls init_default_scope('mmaction') would otherwise send the next
    # test's mmdet builds (in the same xdist worker) to mmaction's registries.
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
