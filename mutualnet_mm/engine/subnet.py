"""Configurations (width[, head width], scale[, frames]) and the cohort each iteration
trains."""
import random
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..checks import check_int
from ..ops.width import WidthRange, check_width_range


class SubnetConfig(NamedTuple):
    """One configuration of an adaptive network.

    Attributes:
        width: Channel width multiplier.
        scale: Input size relative to the size the data pipeline produces.
        frames: Number of frames per clip (video only; ``None`` keeps the clip's).
        head_width: Width of the parts after the backbone (neck, heads) where it is a
            dimension of its own (decoupled widths); ``None``: they follow ``width``.
        depth: Depth multiplier of the depth-elastic parts (RTMDet's CSPNeXt backbone
            and neck); ``None``: the model has no depth dimension.
    """

    width: float
    scale: float
    frames: Optional[int] = None
    head_width: Optional[float] = None
    depth: Optional[float] = None

    @property
    def name(self) -> str:
        """Short stable name, e.g. ``w0.50_s0.75`` (``_f8`` for 8 frames; ``w0.50_h0.25_s1``
        with a head width of its own; ``w0.50_d0.33_s0.75`` with a depth)."""
        frames = '' if self.frames is None else f'_f{self.frames}'
        head = '' if self.head_width is None else f'_h{self.head_width:.2f}'
        depth = '' if self.depth is None else f'_d{self.depth:.3g}'
        return f'w{self.width:.2f}{head}{depth}_s{self.scale:.3g}{frames}'

    def record(self) -> Dict[str, Any]:
        """The configuration as a results record starts: ``name``, ``width``,
        ``head_width`` and ``depth`` (where set), ``scale``, ``frames`` (where set)."""
        values = {'width': self.width, 'head_width': self.head_width, 'depth': self.depth,
                  'scale': self.scale, 'frames': self.frames}
        return {'name': self.name, **{k: v for k, v in values.items() if v is not None}}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> 'SubnetConfig':
        """The configuration of a results record, query-table or bn_stats entry."""
        head_width, depth = record.get('head_width'), record.get('depth')
        return cls(float(record['width']), float(record['scale']), record.get('frames'),
                   None if head_width is None else float(head_width),
                   None if depth is None else float(depth))

    def relative_cost(self, reference: 'SubnetConfig') -> float:
        """Cost relative to ``reference`` as FLOPs scale: ``(width * scale) ** 2`` (times
        the frames and the depth, where both have them) over the same of ``reference``."""
        cost = (self.width / reference.width * self.scale / reference.scale) ** 2
        if self.frames is not None and reference.frames is not None:
            cost *= self.frames / reference.frames
        if self.depth is not None and reference.depth is not None:
            cost *= self.depth / reference.depth
        return cost

    @property
    def label(self) -> str:
        """The name spaced for plots and logs, e.g. ``w0.50 s0.75`` or ``w0.50 h0.25 s1``."""
        return self.name.replace('_', ' ')


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

    Each cohort is: the full configuration (largest width, largest scale, most frames,
    largest depth),
    then ``num_subnets - 2`` widths drawn uniformly from the range in descending order,
    then the smallest width. Every configuration but the full one gets a scale (and
    frame count) drawn from the lists. With ``head_width_range`` (decoupled widths) the
    parts after the backbone get a width of their own, drawn the same way and
    independently of the backbone's: the largest with the full configuration, the
    smallest with the smallest width; ``full_head_passes`` of the middle configurations
    (chosen at random) keep the full head width instead. A cohort depends only on the
    seed and the iteration, so a resumed run draws the same cohorts as an uninterrupted
    one.

    Args:
        width_range: ``(min, max)`` width.
        num_subnets: Configurations per iteration, the full one included (>= 2; 1 only
            with a single width, ``width_range=(w, w)``).
        scales: Scale factors to draw from; the largest is the full configuration's.
        frames: Frame counts to draw from (video), or ``None``.
        seed: Base seed.
        full_only_iters: The first iterations train the full configuration alone
            (progressive warm-up: the shared weights learn before the cohort joins).
        head_width_range: ``(min, max)`` width of the parts after the backbone, drawn
            apart from the backbone's; ``None``: they follow the backbone's width.
        full_head_passes: With ``head_width_range``: how many of the ``num_subnets - 2``
            middle configurations run the neck and heads at their largest width (a
            narrower backbone under the full heads, as backbone-only slimming trains).
        depth_range: ``(min, max)`` depth of the depth-elastic parts, drawn as widths
            are (the largest with the full configuration, the smallest with the smallest
            width, the others between); ``None``: the model has no depth.
    """

    def __init__(self, width_range: WidthRange, num_subnets: int = 4,
                 scales: Sequence[float] = (1.0,), frames: Optional[Sequence[int]] = None,
                 seed: int = 0, full_only_iters: int = 0,
                 head_width_range: Optional[WidthRange] = None,
                 full_head_passes: int = 0, depth_range: Optional[WidthRange] = None) -> None:
        self.width_range = check_width_range(width_range, 'mutual')
        self.depth_range = None if depth_range is None else \
            check_width_range(depth_range, 'mutual (depth_range)', 'depth')
        self.head_width_range = None if head_width_range is None else \
            check_width_range(head_width_range, 'mutual (head_width_range)')
        self.full_head_passes = check_int(full_head_passes, 'mutual.full_head_passes', 0)
        self.full_only_iters = check_int(full_only_iters, 'mutual.full_only_iters', 0)
        self.num_subnets = check_int(num_subnets, 'mutual.num_subnets', 1)
        for key, (low, high) in (('width_range', self.width_range),
                                 ('head_width_range', self.head_width_range or (1, 1)),
                                 ('depth_range', self.depth_range or (1, 1))):
            if self.num_subnets == 1 and low < high:
                raise ValueError(
                    f'mutual.num_subnets=1 trains the full width alone, so the narrower '
                    f'widths of mutual.{key} {(low, high)} would be evaluated untrained; '
                    f'allowed: num_subnets >= 2, or num_subnets=1 with {key}=(w, w) to '
                    'train one width')
        if self.full_head_passes and (self.head_width_range is None or
                                      self.full_head_passes > self.num_subnets - 2):
            raise ValueError(f'mutual.full_head_passes={self.full_head_passes} needs '
                             'head_width_range and at most num_subnets - 2 '
                             f'({max(self.num_subnets - 2, 0)}) middle configurations')
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
        head = None if self.head_width_range is None else self.head_width_range[1]
        depth = None if self.depth_range is None else self.depth_range[1]
        return SubnetConfig(self.width_range[1], max(self.scales), frames, head, depth)

    def cohort(self, iteration: int) -> List[SubnetConfig]:
        """The configurations of ``iteration``, largest first."""
        if iteration < self.full_only_iters:
            return [self.full]
        rng = random.Random(f'{self.seed}:{iteration}')
        widths = self._draw_widths(rng, self.width_range)
        # Drawn after the backbone's, so coupled runs draw the cohorts they always drew.
        heads = [None] * len(widths) if self.head_width_range is None else \
            self._draw_widths(rng, self.head_width_range)
        for index in rng.sample(range(len(widths) - 1), self.full_head_passes):
            heads[index] = self.head_width_range[1]
        depths = [None] * len(widths) if self.depth_range is None else \
            self._draw_widths(rng, self.depth_range)
        cohort = [self.full]
        for width, head, depth in zip(widths, heads, depths):
            frames = None if self.frames is None else rng.choice(self.frames)
            cohort.append(SubnetConfig(width, rng.choice(self.scales), frames, head, depth))
        return cohort

    def _draw_widths(self, rng: random.Random, width_range: WidthRange) -> List[float]:
        """The widths after the full one: drawn from the range largest first, then its
        smallest."""
        low, high = width_range
        widths = sorted((rng.uniform(low, high) for _ in range(self.num_subnets - 2)),
                        reverse=True)
        if self.num_subnets >= 2:
            widths.append(low)
        return widths
