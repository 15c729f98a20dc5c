"""``benchmarks/common.py``: the interleaved timing and the paired ratio every benchmark
reports. Deterministic: a fake clock that only the timed cases advance."""
import importlib.util
import os.path as osp
import statistics
import sys
from typing import Callable, Dict, List

import pytest

_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'benchmarks')


def load_script(name: str):
    """The benchmark script ``benchmarks/<name>.py`` as a module named ``benchmarks_<name>``.

    benchmarks/ is a folder of scripts, not a package: each is loaded by its path, and the
    scripts that import their sibling ``common`` by name find it loaded.
    """
    spec = importlib.util.spec_from_file_location(f'benchmarks_{name}',
                                                  osp.join(_DIR, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    if name == 'common':
        sys.modules.setdefault('common', module)
    return module


common = load_script('common')


class FakeClock:
    """A clock that moves only when told: case ``i`` takes ``i + 1`` seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_cases(count: int, clock: FakeClock, log: List[str],
               setup_log: List[str] = None) -> List['common.Case']:
    def runner(name: str, seconds: float) -> Callable[[], None]:
        def run() -> None:
            log.append(name)
            clock.now += seconds
        return run

    def setup(name: str) -> Callable[[], None]:
        def prepare() -> None:
            setup_log.append(name)
            clock.now += 1000.0  # untimed: must not reach the recorded times
        return prepare

    return [common.Case(f'c{i}', runner(f'c{i}', i + 1.0),
                        setup(f'c{i}') if setup_log is not None else None)
            for i in range(count)]


def run_interleaved(count: int = 6, repeats: int = 5, warmup: int = 2, block: int = 1,
                    seed: int = 0, setup: bool = False):
    clock, log = FakeClock(), []
    setup_log = [] if setup else None
    cases = make_cases(count, clock, log, setup_log)
    times = common.time_interleaved(cases, repeats, warmup, clock=clock, block=block,
                                    seed=seed)
    return times, log, setup_log


def rounds_of(log: List[str], count: int) -> List[List[str]]:
    return [log[i:i + count] for i in range(0, len(log), count)]


@pytest.mark.parametrize('block', [1, 2, 3])
def test_every_case_runs_warmup_plus_repeats_and_records_repeats(block):
    times, log, _ = run_interleaved(count=6, repeats=5, warmup=2, block=block)
    assert sorted(times) == [f'c{i}' for i in range(6)]
    for i in range(6):
        assert log.count(f'c{i}') == 2 + 5
        assert times[f'c{i}'] == [i + 1.0] * 5  # the case's own time, every timed round


def test_every_round_runs_every_case_once():
    _, log, _ = run_interleaved(count=6, repeats=4, warmup=1)
    for order in rounds_of(log, 6):
        assert sorted(order) == [f'c{i}' for i in range(6)]


def test_setup_runs_before_each_run_and_is_not_timed():
    times, log, setup_log = run_interleaved(count=4, repeats=3, warmup=1, setup=True)
    assert setup_log == log
    for i in range(4):
        assert times[f'c{i}'] == [i + 1.0] * 3


def test_no_warmup_records_every_round():
    times, log, _ = run_interleaved(count=3, repeats=4, warmup=0)
    assert len(log) == 3 * 4
    assert all(len(values) == 4 for values in times.values())


def test_blocks_keep_their_cases_adjacent():
    count, block = 12, 3
    blocks = [{f'c{i}' for i in range(start, start + block)}
              for start in range(0, count, block)]
    _, log, _ = run_interleaved(count=count, repeats=6, warmup=2, block=block)
    for order in rounds_of(log, count):
        chunks = [set(order[i:i + block]) for i in range(0, count, block)]
        assert sorted(map(sorted, chunks)) == sorted(map(sorted, blocks))


def test_orders_differ_between_rounds():
    count, block = 12, 3
    _, log, _ = run_interleaved(count=count, repeats=6, warmup=2, block=block)
    orders = rounds_of(log, count)
    assert len({tuple(order) for order in orders}) > 1
    # Within a block too: the sides do not always run in the same order.
    first_block = [[name for name in order if name in {'c0', 'c1', 'c2'}] for order in orders]
    assert len({tuple(sides) for sides in first_block}) > 1


def test_orders_are_reproducible_for_a_seed():
    _, log_a, _ = run_interleaved(count=12, repeats=5, block=3, seed=7)
    _, log_b, _ = run_interleaved(count=12, repeats=5, block=3, seed=7)
    _, log_c, _ = run_interleaved(count=12, repeats=5, block=3, seed=8)
    assert log_a == log_b
    assert log_a != log_c


@pytest.mark.parametrize('kwargs', [
    dict(repeats=0), dict(repeats=-1), dict(warmup=-1),
    dict(block=0), dict(block=4),  # 6 cases do not split into blocks of 4
])
def test_bad_arguments_raise(kwargs):
    clock, log = FakeClock(), []
    arguments: Dict[str, int] = dict(repeats=3, warmup=1, block=1)
    arguments.update(kwargs)
    with pytest.raises(ValueError):
        common.time_interleaved(make_cases(6, clock, log), clock=clock, **arguments)
    assert log == []  # refused before running anything


def test_paired_ratio_is_the_median_of_per_round_ratios():
    numerator, denominator = [1.0, 2.0, 10.0], [1.0, 4.0, 5.0]
    # per round: 1.0, 0.5, 2.0 -> median 1.0; the ratio of the medians would be 0.5
    assert common.paired_ratio(numerator, denominator) == 1.0
    assert statistics.median(numerator) / statistics.median(denominator) == 0.5
    assert common.paired_ratio([3.0, 1.0, 4.0, 1.0], [1.0, 1.0, 2.0, 2.0]) == (
        statistics.median([3.0, 1.0, 2.0, 0.5]))


def test_paired_ratio_refuses_unequal_lengths():
    with pytest.raises(ValueError):
        common.paired_ratio([1.0, 2.0], [1.0])


def test_target_note_only_judges_a_given_target():
    assert common.target_note([1.01, 1.02], None) == ''
    assert 'within target' in common.target_note([1.01, 1.02], 1.03)
    assert '1 of 2 over target' in common.target_note([1.01, 1.04], 1.03)


def test_the_header_names_paths_in_the_checkout_relative_to_it(capsys, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [osp.join(_DIR, 'train_overhead.py')])
    args = common.argparse.Namespace(config=common.DEMO_CONFIG, data_root='/data/coco',
                                     threads=None)
    common.print_header('title', args)
    printed = capsys.readouterr().out
    assert 'command: benchmarks/train_overhead.py' in printed
    assert 'config=configs/demo/maskrcnn_mutual_r18_shapes.py' in printed
    assert 'data_root=/data/coco' in printed  # outside the checkout: kept as given
