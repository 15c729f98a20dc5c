"""The one check that a state dict fits a model, and the hook that applies it on load."""
import re
from typing import Mapping, Optional

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel
from mmengine.registry import HOOKS
from torch import Tensor, nn

from ..models.wrappers import unwrap


class StateDictMismatchError(KeyError, ValueError):
    """A checkpoint lacks a weight of the model or has one it lacks (a ``KeyError``, as
    torch's strict loading names keys; also a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0])


def check_state_dict_fits(model: nn.Module, state_dict: Mapping[str, Tensor],
                          source: str = 'the checkpoint') -> None:
    """Raise unless ``state_dict`` has exactly the model's names and shapes.

    A ``module.`` prefix (DDP) is ignored, and so are missing ``num_batches_tracked``
    counters, as mmengine does. The message names the first mismatch in the model's
    order and counts the rest.

    Raises:
        StateDictMismatchError: a weight is missing or unexpected.
        ValueError: a weight has another shape than the model's.
    """
    loaded = {re.sub(r'^module\.', '', key): value for key, value in state_dict.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in loaded and 'num_batches_tracked' not in k]
    reshaped = [k for k in expected if k in loaded and
                tuple(getattr(loaded[k], 'shape', ())) != tuple(expected[k].shape)]
    unexpected = [k for k in loaded if k not in expected]
    if not (missing or reshaped or unexpected):
        return
    first = next((k for k in expected if k in missing or k in reshaped), None)
    if first in reshaped:
        detail = (f'{first!r} has shape {tuple(loaded[first].shape)} in it and '
                  f'{tuple(expected[first].shape)} in the model')
    elif first is not None:
        detail = f"the model's {first!r} is not in it"
    else:
        detail = f'its {unexpected[0]!r} is not in the model'
    error = ValueError if first in reshaped else StateDictMismatchError
    raise error(
        f'{source} does not fit {type(model).__name__}: {detail} ({len(missing)} missing, '
        f'{len(unexpected)} unexpected, {len(reshaped)} reshaped weights in all). It needs a '
        "checkpoint of this config's architecture; to start training from another model "
        'use load_from, which loads what fits and warns')


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuse a checkpoint whose weights do not fit the model exactly.

    mmengine loads checkpoints with ``strict=False``, only warning about missing,
    unexpected or reshaped weights: resuming or evaluating such a checkpoint would
    silently run a partly random model. ``tools/test.py`` and ``tools/train.py
    --resume`` add this hook; ``load_from`` for training keeps mmengine's warning
    (initializing from another model, e.g. with another number of classes, is common).

    Args:
        filename: The checkpoint's path, for the message (if known).
    """

    priority = 'VERY_HIGH'

    def __init__(self, filename: Optional[str] = None) -> None:
        self.filename = filename

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap(runner.model)
        if isinstance(model, BaseTTAModel):  # loaded as mmengine does
            model = model.module
        source = f'checkpoint {self.filename!r}' if self.filename else 'the checkpoint'
        check_state_dict_fits(model, checkpoint.get('state_dict', checkpoint), source)


__all__ = ['CheckpointMatchHook', 'StateDictMismatchError', 'check_state_dict_fits']
