"""Every test starts from the registry scope the session started with: none leaks."""
from collections import OrderedDict
from typing import Iterator

import pytest
from mmengine.registry import DefaultScope


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
