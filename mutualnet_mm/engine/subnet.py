"""Configurations (width, scale[, frames]) and the cohort each iteration trains."""
import random
from typing import List, NamedTuple, Optional, Sequence, Tuple

from ..checks import check_int
from ..ops.width import WidthRange, check_width_range


class SubnetConfig(NamedTuple):
    """One configuration of an adaptive network.

    Attributes:
        width: Channel width multiplier.
        scale: Input size relative to the size the data pipeline produces.
        frames: Number of frames per clip (video only; ``None`` keeps the clip's).
    """

    width: float
    scale: float
    frames: Optional[int] = None

    @property
    def name(self) -> str:
        """Short stable name, e.g. ``w0.50_s0.75`` (``_f8`` for 8 frames)."""
        frames = '' if self.frames is None else f'_f{self.frames}'
        return f'w{self.width:.2f}_s{self.scale:.3g}{frames}'


def check_scales(scales: Sequence[float], owner: str = 'mutual') -> Tuple[float, ...]:
    """Validate a list of scale factors: non-empty, each in (0, 4]."""
    if isinstance(scales, (int, float)) or not scales:
        raise ValueError(f'{owner}.scales must be a non-empty list of numbers in (0, 4], '
                         f'got {scales!r}')
    checked = []
    for scale in scales:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
                not 0 < scale <= 4:
            raise ValueError(f'{owner}.scales must hold numbers in (0, 4], got {scale!r} '
                             f'in {list(scales)!r}')
        checked.append(float(scale))
    return tuple(checked)


class CohortSampler:
    """Draws the configurations one training iteration runs (the sandwich rule).

    Each cohort is: the full configuration (largest width, largest scale, most frames),
    then ``num_subnets - 2`` widths drawn uniformly from the range in descending order,
    then the smallest width. Every configuration but the full one gets a scale (and
    frame count) drawn from the lists. A cohort depends only on the seed and the
    iteration, so a resumed run draws the same cohorts as an uninterrupted one.

    Args:
        width_range: ``(min, max)`` width.
        num_subnets: Configurations per iteration, the full one included (>= 2; 1 only
            with a single width, ``width_range=(w, w)``).
        scales: Scale factors to draw from; the largest is the full configuration's.
        frames: Frame counts to draw from (video), or ``None``.
        seed: Base seed.
        full_only_iters: The first iterations train the full configuration alone
            (progressive warm-up: the shared weights learn before the cohort joins).
    """

    def __init__(self, width_range: WidthRange, num_subnets: int = 4,
                 scales: Sequence[float] = (1.0,), frames: Optional[Sequence[int]] = None,
                 seed: int = 0, full_only_iters: int = 0) -> None:
        self.width_range = check_width_range(width_range, 'mutual')
        self.full_only_iters = check_int(full_only_iters, 'mutual.full_only_iters', 0)
        self.num_subnets = check_int(num_subnets, 'mutual.num_subnets', 1)
        if self.num_subnets == 1 and self.width_range[0] < self.width_range[1]:
            raise ValueError(f'mutual.num_subnets=1 trains the full width alone, so the '
                             f'narrower widths of mutual.width_range {self.width_range} would '
                             f'be evaluated untrained; allowed: num_subnets >= 2, or '
                             f'num_subnets=1 with width_range=(w, w) to train one width')
        self.scales = check_scales(scales)
        if frames is not None and (not frames or any(
                not isinstance(f, int) or f < 1 for f in frames)):
            raise ValueError(f'mutual.frames must be a non-empty list of positive integers '
                             f'or None, got {frames!r}')
        self.frames = None if frames is None else tuple(frames)
        self.seed = seed

    @property
    def full(self) -> SubnetConfig:
        """The largest configuration."""
        frames = None if self.frames is None else max(self.frames)
        return SubnetConfig(self.width_range[1], max(self.scales), frames)

    def cohort(self, iteration: int) -> List[SubnetConfig]:
        """The configurations of ``iteration``, largest first."""
        if iteration < self.full_only_iters:
            return [self.full]
        rng = random.Random(f'{self.seed}:{iteration}')
        low, high = self.width_range
        widths = sorted((rng.uniform(low, high) for _ in range(self.num_subnets - 2)),
                        reverse=True)
        if self.num_subnets >= 2:
            widths.append(low)
        cohort = [self.full]
        for width in widths:
            frames = None if self.frames is None else rng.choice(self.frames)
            cohort.append(SubnetConfig(width, rng.choice(self.scales), frames))
        return cohort
