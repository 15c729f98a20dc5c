"""Cohorts of the sandwich rule: structure, determinism, and clear errors on bad settings."""
import pytest

from mutualnet_mm.engine import CohortSampler, SubnetConfig
from mutualnet_mm.engine.subnet import check_scales

SCALES = (1.0, 0.875, 0.75, 0.5)
FRAMES = (4, 8, 16)


@pytest.mark.parametrize('num_subnets', [3, 4, 6])
def test_cohort_is_full_then_descending_mids_then_min(num_subnets: int) -> None:
    sampler = CohortSampler((0.25, 1.0), num_subnets, SCALES, seed=7)
    for iteration in range(20):
        cohort = sampler.cohort(iteration)
        assert len(cohort) == num_subnets
        assert cohort[0] == SubnetConfig(1.0, 1.0) == sampler.full
        assert cohort[-1].width == 0.25
        mids = [c.width for c in cohort[1:-1]]
        assert mids == sorted(mids, reverse=True)
        assert all(0.25 <= w <= 1.0 for w in mids)
        assert all(c.scale in SCALES and c.frames is None for c in cohort)


def test_full_config_takes_the_largest_width_scale_and_frames() -> None:
    sampler = CohortSampler((0.35, 0.9), 4, (0.5, 1.25, 0.75), FRAMES, seed=1)
    assert sampler.full == SubnetConfig(0.9, 1.25, 16)
    for iteration in range(10):
        cohort = sampler.cohort(iteration)
        assert cohort[0] == sampler.full
        assert cohort[-1].width == 0.35
        assert all(c.frames in FRAMES for c in cohort)


def test_one_and_two_subnets() -> None:
    one = CohortSampler((1.0, 1.0), 1, SCALES)  # one width trained alone
    assert [one.cohort(i) for i in range(3)] == [[SubnetConfig(1.0, 1.0)]] * 3
    two = CohortSampler((0.25, 1.0), 2, SCALES)
    for iteration in range(5):
        full, smallest = two.cohort(iteration)
        assert full == SubnetConfig(1.0, 1.0)
        assert smallest.width == 0.25 and smallest.scale in SCALES


def test_cohorts_depend_only_on_seed_and_iteration() -> None:
    first = CohortSampler((0.25, 1.0), 4, SCALES, FRAMES, seed=3)
    again = CohortSampler((0.25, 1.0), 4, SCALES, FRAMES, seed=3)
    # The order of the queries does not matter (a resumed run draws the same cohorts).
    assert [first.cohort(i) for i in (5, 0, 9)] == [again.cohort(i) for i in (5, 0, 9)]
    mids = {tuple(c.width for c in first.cohort(i)[1:-1]) for i in range(10)}
    assert len(mids) == 10
    scales = {tuple(c.scale for c in first.cohort(i)[1:]) for i in range(30)}
    assert len(scales) > 1
    other_seed = CohortSampler((0.25, 1.0), 4, SCALES, FRAMES, seed=4)
    assert first.cohort(5) != other_seed.cohort(5)


def test_scales_and_frames_are_drawn_from_the_lists() -> None:
    sampler = CohortSampler((0.25, 1.0), 4, (0.5, 0.75), (4, 8), seed=0)
    drawn = [c for i in range(50) for c in sampler.cohort(i)[1:]]
    assert {c.scale for c in drawn} == {0.5, 0.75}
    assert {c.frames for c in drawn} == {4, 8}


def test_config_names() -> None:
    assert SubnetConfig(0.5, 0.75).name == 'w0.50_s0.75'
    assert SubnetConfig(1.0, 1.0, 8).name == 'w1.00_s1_f8'
    assert SubnetConfig(0.5, 1.0, head_width=0.25).name == 'w0.50_h0.25_s1'
    assert SubnetConfig(0.5, 1.0, head_width=0.25).label == 'w0.50 h0.25 s1'
    assert SubnetConfig(0.5, 0.75, depth=0.33).name == 'w0.50_d0.33_s0.75'
    assert SubnetConfig(0.375, 1.0, depth=0.167).name == 'w0.38_d0.167_s1'
    assert SubnetConfig(0.5, 0.75).label == 'w0.50 s0.75'
    assert SubnetConfig(1.0, 4 / 7, frames=8).label == 'w1.00 s0.571 f8'  # as in the name


@pytest.mark.parametrize('config', [SubnetConfig(0.5, 0.75), SubnetConfig(1.0, 1.0, 8),
                                    SubnetConfig(0.25, 0.5, head_width=1.0),
                                    SubnetConfig(0.5, 0.75, depth=0.33)])
def test_configs_round_trip_through_records(config) -> None:
    record = config.record()
    assert record['name'] == config.name
    assert ('head_width' in record) == (config.head_width is not None)
    assert ('depth' in record) == (config.depth is not None)
    assert SubnetConfig.from_record(record) == config


def test_decoupled_head_widths_are_drawn_apart_from_the_backbones() -> None:
    sampler = CohortSampler((0.25, 1.0), 4, SCALES, seed=5, head_width_range=(0.5, 1.0))
    assert sampler.full == SubnetConfig(1.0, 1.0, head_width=1.0)
    pairs = []
    for iteration in range(40):
        cohort = sampler.cohort(iteration)
        assert cohort[0] == sampler.full
        assert (cohort[-1].width, cohort[-1].head_width) == (0.25, 0.5)
        heads = [c.head_width for c in cohort[1:-1]]
        assert heads == sorted(heads, reverse=True) and all(0.5 <= h <= 1.0 for h in heads)
        pairs += [(c.width, c.head_width) for c in cohort[1:-1]]
    # drawn independently: a narrow backbone meets a wide head and the reverse
    assert any(w < 0.5 and h > 0.75 for w, h in pairs)
    assert any(w > 0.75 and h < 0.75 for w, h in pairs)
    # coupled sampling draws what it drew before decoupled widths existed
    coupled = CohortSampler((0.25, 1.0), 4, SCALES, seed=5)
    assert [c.head_width for i in range(5) for c in coupled.cohort(i)] == [None] * 20
    assert [round(c.width, 6) for c in coupled.cohort(3)] == \
        [round(c.width, 6) for c in sampler.cohort(3)]


def test_full_head_passes_keep_full_heads_on_middle_configurations() -> None:
    sampler = CohortSampler((0.25, 1.0), 4, SCALES, seed=2, head_width_range=(0.25, 1.0),
                            full_head_passes=1)
    narrow_under_full_heads = 0
    for iteration in range(40):
        cohort = sampler.cohort(iteration)
        mids = cohort[1:-1]
        assert sum(c.head_width == 1.0 for c in mids) >= 1
        assert (cohort[-1].width, cohort[-1].head_width) == (0.25, 0.25)
        narrow_under_full_heads += any(c.width < 0.5 and c.head_width == 1.0 for c in mids)
    assert narrow_under_full_heads > 0
    assert {i for i in range(40) if sampler.cohort(i)[1].head_width == 1.0} != set(range(40))
    for bad in (dict(full_head_passes=1), dict(head_width_range=(0.25, 1.0), full_head_passes=3)):
        with pytest.raises(ValueError, match='full_head_passes'):
            CohortSampler((0.25, 1.0), 4, **bad)


def test_one_subnet_needs_a_single_head_width() -> None:
    with pytest.raises(ValueError, match=r'narrower widths of mutual.head_width_range '
                                         r'\(0.5, 1.0\)'):
        CohortSampler((1.0, 1.0), 1, head_width_range=(0.5, 1.0))
    with pytest.raises(ValueError, match=r'head_width_range'):
        CohortSampler((0.25, 1.0), 4, head_width_range=(0.0, 1.0))


@pytest.mark.parametrize('num_subnets', [0, -1, 2.0, True, '4'])
def test_bad_num_subnets(num_subnets) -> None:
    with pytest.raises(ValueError, match='num_subnets must be an integer >= 1'):
        CohortSampler((0.25, 1.0), num_subnets)


def test_one_subnet_needs_a_single_width() -> None:
    with pytest.raises(ValueError, match=r'mutual\.num_subnets=1 trains the full width alone, '
                                         r'so the narrower widths of mutual\.width_range '
                                         r'\(0\.25, 1\.0\) would be evaluated untrained; '
                                         r'allowed: num_subnets >= 2, or num_subnets=1 with '
                                         r'width_range=\(w, w\)'):
        CohortSampler((0.25, 1.0), 1)


@pytest.mark.parametrize('scales', [(), [], 1.0, (0.5, 0.0), (-0.5,), (5.0,), ('1',), (True,)])
def test_bad_scales(scales) -> None:
    with pytest.raises(ValueError, match=r'scales must (be a non-empty list|hold numbers)'):
        CohortSampler((0.25, 1.0), 4, scales)


def test_check_scales_names_its_owner_and_returns_floats() -> None:
    assert check_scales([1, 0.5]) == (1.0, 0.5)
    with pytest.raises(ValueError, match=r'PerConfigValLoop\.scales .* got 0'):
        check_scales([1.0, 0], 'PerConfigValLoop')


@pytest.mark.parametrize('width_range', [(0.0, 1.0), (0.5, 1.5), (0.8, 0.4), (0.5,), 'ab',
                                         None])
def test_bad_width_ranges(width_range) -> None:
    with pytest.raises(ValueError, match='width_range of mutual'):
        CohortSampler(width_range, 4)


@pytest.mark.parametrize('frames', [(), (0, 8), (8.0,), ('8',)])
def test_bad_frames(frames) -> None:
    with pytest.raises(ValueError, match='frames must be a non-empty list of positive'):
        CohortSampler((0.25, 1.0), 4, (1.0,), frames)


def test_full_only_iterations_come_first_then_the_same_cohorts() -> None:
    plain = CohortSampler((0.25, 1.0), 4, SCALES, seed=3)
    warm = CohortSampler((0.25, 1.0), 4, SCALES, seed=3, full_only_iters=5)
    for iteration in range(5):
        assert warm.cohort(iteration) == [warm.full]
    for iteration in range(5, 12):
        assert warm.cohort(iteration) == plain.cohort(iteration)
        assert len(warm.cohort(iteration)) == 4


@pytest.mark.parametrize('iters', [-1, 2.5, True, '3'])
def test_bad_full_only_iters(iters) -> None:
    with pytest.raises(ValueError, match='full_only_iters must be an integer >= 0'):
        CohortSampler((0.25, 1.0), 4, full_only_iters=iters)


def test_depths_are_drawn_as_widths_are() -> None:
    sampler = CohortSampler((0.375, 1.0), 4, SCALES, seed=5, depth_range=(0.167, 1.0))
    assert sampler.full == SubnetConfig(1.0, 1.0, depth=1.0)
    for iteration in range(20):
        cohort = sampler.cohort(iteration)
        assert (cohort[-1].width, cohort[-1].depth) == (0.375, 0.167)
        depths = [c.depth for c in cohort[1:-1]]
        assert depths == sorted(depths, reverse=True) and all(0.167 <= d <= 1 for d in depths)
    plain = CohortSampler((0.375, 1.0), 4, SCALES, seed=5)  # widths drawn first, as before
    assert [c.width for c in plain.cohort(3)] == [c.width for c in sampler.cohort(3)]
    with pytest.raises(ValueError, match='depth_range of mutual'):
        CohortSampler((0.375, 1.0), 4, SCALES, depth_range=(0.0, 1.0))
