"""scikit-learn's handwritten digits as an mmpretrain ``CustomDataset`` image folder.

The 1797 digits are real scans (8 x 8 pixels, 17 grey levels) shipped inside
scikit-learn. They are upscaled (bilinear) to ``size`` pixels, written as PNGs under
``<root>/{train,val}/<digit>/<index>.png`` and split per class with a fixed seed, so the
same call always writes the same files.
"""
import os
import os.path as osp
import shutil
from typing import Dict

import cv2
import numpy as np

from ..checks import check_int

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def write_digits(root: str, size: int = 32, val_fraction: float = 0.2,
                 seed: int = 0) -> Dict[str, int]:
    """Write the digits to ``root``; return the number of images per split.

    Args:
        root: Output folder (created; its ``train`` and ``val`` folders are replaced).
        size: Side of the written images in pixels (>= 8).
        val_fraction: Share of each class held out for validation, in (0, 1).
        seed: Seed of the split.

    Raises:
        ValueError: ``size`` or ``val_fraction`` out of range.
    """
    from sklearn.datasets import load_digits
    size = check_int(size, 'size', 8)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or \
            not 0 < val_fraction < 1:
        raise ValueError(f'val_fraction must be a number in (0, 1), got {val_fraction!r}')
    digits = load_digits()
    for split in ('train', 'val'):
        shutil.rmtree(osp.join(root, split), ignore_errors=True)
    rng = np.random.default_rng(seed)
    counts = {'train': 0, 'val': 0}
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        num_val = round(len(indices) * val_fraction)
        for split, chosen in (('val', indices[:num_val]), ('train', indices[num_val:])):
            folder = osp.join(root, split, DIGIT_CLASSES[label])
            os.makedirs(folder, exist_ok=True)
            for index in sorted(chosen):
                image = (digits.images[index] * (255.0 / 16.0)).astype(np.float32)
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
                cv2.imwrite(osp.join(folder, f'{index:04d}.png'),
                            np.clip(image + 0.5, 0, 255).astype(np.uint8))
                counts[split] += 1
    return counts
