"""Which weights a result file was measured on: one fingerprint, used everywhere.

Query tables, result sets and BN statistics files record the fingerprint of the model
they were measured on; readers compare it with the fingerprint of the model they load.
"""
import hashlib
from typing import Optional

import torch
from torch import nn

from ..models.wrappers import unwrap

#: Buffers BN calibration rewrites: left out, so that a checkpoint and the same weights
#: after calibration have one fingerprint.
CALIBRATED_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


def weights_fingerprint(model: nn.Module) -> str:
    """The sha256 of the model's parameters and buffers, in key order, without BN statistics.

    Each tensor contributes its key, dtype, shape and bytes (on the CPU), so the
    fingerprint does not depend on the device or on a DDP wrapper.
    """
    module = unwrap(model)
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        if key.rpartition('.')[2] in CALIBRATED_BUFFERS:
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f'{key}|{data.dtype}|{tuple(data.shape)}|'.encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_fingerprint(source: str, recorded: Optional[str], expected: str,
                      checkpoint_name: str, regenerate: str) -> None:
    """Refuse a file measured on other weights than ``checkpoint_name``'s, or not recorded.

    Args:
        source: What is checked, for the message (e.g. ``query table 'x.json'``).
        recorded: The fingerprint the file records (``None``: it records none).
        expected: The fingerprint of the loaded model (:func:`weights_fingerprint`).
        checkpoint_name: Where the model's weights come from, for the message.
        regenerate: The command that makes a matching file.

    Raises:
        ValueError: the fingerprints differ, or ``recorded`` is ``None``.
    """
    if recorded is None:
        raise ValueError(f'{source} records no checkpoint fingerprint (it predates them), so '
                         f'it cannot be matched to {checkpoint_name}; regenerate it: '
                         f'{regenerate}')
    if recorded != expected:
        raise ValueError(f'{source} belongs to another checkpoint: it was measured on weights '
                         f'{recorded}, {checkpoint_name} has weights {expected}; regenerate '
                         f'it: {regenerate}')
