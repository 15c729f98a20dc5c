"""The channel rules: how many channels a layer keeps at a width multiplier.

Every part of the package (layers, backbones, necks, heads, FLOPs counting, export)
derives channel counts from :func:`make_divisible` (:func:`scale_channels`), except the
families whose stock members round down (RTMDet's: :func:`widen_channels`); nothing else
rounds channels.
"""
from typing import Sequence, Tuple

WidthRange = Tuple[float, float]

#: Channel counts are multiples of this at every width (the reference models use 8).
CHANNEL_DIVISOR = 8
_TOLERANCE = 1e-6


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, losing at most 10%.

    The same rule as mmdet's ``make_divisible`` and mmaction2's X3D ``_round_width``
    (with their default minimum of one divisor), so a slimmable network at a width has the
    channel counts of the stock network built with that width.

    Args:
        value: The unrounded channel count.
        divisor: The granularity of channel counts.

    Returns:
        The rounded channel count, at least ``divisor``.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Channels kept by a layer with ``channels`` full-width channels at ``width``.

    Width 1.0 keeps the full count exactly, whatever its divisibility.
    """
    if abs(width - 1.0) < _TOLERANCE:
        return channels
    return min(channels, make_divisible(channels * width, divisor))


def widen_channels(channels: int, width: float) -> int:
    """Channels kept at ``width`` by a family that rounds down, as RTMDet's CSPNeXt,
    CSPNeXtPAFPN and heads do (``int(channels * widen_factor)``)."""
    return max(1, int(channels * width))


def check_width_range(width_range: Sequence[float], owner: str = 'module',
                      what: str = 'width') -> WidthRange:
    """Validate a ``(min, max)`` width (or depth) range and return it as floats."""
    try:
        low, high = (float(v) for v in width_range)
    except (TypeError, ValueError):
        raise ValueError(f'{what}_range of {owner} must be two numbers (min, max), '
                         f'got {width_range!r}') from None
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f'{what}_range of {owner} must satisfy 0 < min <= max <= 1.0, '
                         f'got {width_range!r}')
    return low, high


def check_width(width: float, width_range: WidthRange, owner: str = 'model',
                what: str = 'width') -> float:
    """Return ``width`` (or a depth) as a float, or raise ``ValueError`` naming it and
    the range."""
    try:
        value = float(width)
    except (TypeError, ValueError):
        raise ValueError(f'{what} must be a number, got {width!r}') from None
    low, high = width_range
    if not low - _TOLERANCE <= value <= high + _TOLERANCE:
        raise ValueError(f'{what} {value:g} is outside the range [{low:g}, {high:g}] '
                         f'allowed by {owner}')
    return value
