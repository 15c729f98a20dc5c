"""The channel rule and width validation."""
import pytest
from mmdet.models.utils import make_divisible as mmdet_make_divisible

from mutualnet_mm.ops import check_width, check_width_range, make_divisible, scale_channels


@pytest.mark.parametrize('value, expected', [
    (19.2, 24),   # rounds down to 16, which loses more than 10%, so up to 24
    (20.0, 24),   # halfway rounds up
    (12.0, 16),
    (11.9, 16),   # 8 would lose more than 10%
    (8.8, 8),
    (3.0, 8),     # never below one divisor
    (64.0, 64),
    (1280.0, 1280),
])
def test_make_divisible_values(value: float, expected: int) -> None:
    assert make_divisible(value) == expected


def test_make_divisible_is_mmdets_rule() -> None:
    values = [v / 10 for v in range(1, 20000, 7)]
    assert [make_divisible(v) for v in values] == [mmdet_make_divisible(v, 8) for v in values]


def test_make_divisible_never_decreases() -> None:
    rounded = [make_divisible(v / 10) for v in range(1, 5000)]
    assert rounded == sorted(rounded)


@pytest.mark.parametrize('channels, width, expected', [
    (64, 0.5, 32),
    (64, 0.25, 16),
    (64, 0.3, 24),
    (1280, 1.0, 1280),
    (3, 1.0, 3),        # full width is exact, whatever the divisibility
    (12, 0.9, 12),      # never more than the full count
    (20, 0.5, 16),
])
def test_scale_channels_values(channels: int, width: float, expected: int) -> None:
    assert scale_channels(channels, width) == expected


def test_check_width_range_accepts_and_normalizes() -> None:
    assert check_width_range([0.25, 1]) == (0.25, 1.0)
    assert check_width_range((1.0, 1.0)) == (1.0, 1.0)


@pytest.mark.parametrize('width_range', [(0.0, 1.0), (0.5, 0.25), (0.25, 1.5), (0.5,), 'ab',
                                         None])
def test_check_width_range_rejects(width_range) -> None:
    with pytest.raises(ValueError, match='width_range of Owner'):
        check_width_range(width_range, 'Owner')


def test_check_width() -> None:
    assert check_width(0.5, (0.25, 1.0)) == 0.5
    assert check_width(1.0 + 1e-9, (0.25, 1.0)) == 1.0 + 1e-9  # float noise is tolerated
    with pytest.raises(ValueError, match=r'width 0.2 is outside the range \[0.25, 1\] '
                                         'allowed by Net'):
        check_width(0.2, (0.25, 1.0), 'Net')
    with pytest.raises(ValueError, match='width must be a number'):
        check_width('wide', (0.25, 1.0))
