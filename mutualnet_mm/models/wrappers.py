"""The model inside an mmengine wrapper (DDP, FSDP, ...)."""
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP (or other mmengine) wrapper; ``model`` itself otherwise."""
    return model.module if is_model_wrapper(model) else model


__all__ = ['unwrap']
