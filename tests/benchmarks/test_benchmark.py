"""``benchmarks/benchmark.py``: one entry point that reaches every benchmark script."""
import glob
import importlib.util
import os.path as osp
import sys

import pytest

_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'benchmarks')
_spec = importlib.util.spec_from_file_location('benchmarks_benchmark',
                                               osp.join(_DIR, 'benchmark.py'))
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_every_script_is_a_command_and_listed_with_what_it_measures(capsys) -> None:
    scripts = {osp.basename(p) for p in glob.glob(osp.join(_DIR, '*.py'))}
    assert set(benchmark.COMMANDS.values()) == scripts - {'common.py', 'benchmark.py'}
    benchmark.main([])
    listed = capsys.readouterr().out
    for name, script in benchmark.COMMANDS.items():
        assert f'  {name} ' in listed and benchmark.summary(script) in listed


def test_a_command_runs_its_script_with_the_arguments(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, 'argv', list(sys.argv))  # the command sets both
    monkeypatch.setattr(sys, 'path', list(sys.path))
    with pytest.raises(SystemExit) as stop:
        benchmark.main(['eta', '--help'])
    assert stop.value.code == 0
    assert '--detector-epochs' in capsys.readouterr().out


def test_an_unknown_command_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(SystemExit, match="unknown command 'latency'; allowed: train, memory"):
        benchmark.main(['latency'])
