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


def test_the_machine_key_names_cpu_cores_torch_release_and_gpu() -> None:
    assert benchmark.machine_key('AMD EPYC 7B13 64-Core Processor', 2, '2.13.0+cu130') == \
        'amd-epyc-7b13-64-core-processor_2-cores_torch-2.13.0'
    assert benchmark.machine_key('Intel(R) Xeon(R) CPU @ 2.20GHz', 16, '2.11.0',
                                 'NVIDIA H200') == 'intel-xeon_16-cores_torch-2.11.0_nvidia-h200'


def test_recording_replaces_only_its_own_section(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(benchmark, 'RESULTS', str(tmp_path))
    path = benchmark.record('benchmark.py memory', 'peak 1 MB\n## not a heading', 'box')
    benchmark.record('benchmark.py train', 'ratio 1.10', 'box')
    benchmark.record('benchmark.py memory', 'peak 2 MB', 'box')
    with open(path) as handle:
        text = handle.read()
    assert path == str(tmp_path / 'box.md')
    assert 'peak 2 MB' in text and 'peak 1 MB' not in text and 'ratio 1.10' in text
    assert text.index('## benchmark.py memory') < text.index('## benchmark.py train')
    assert text.count('## benchmark.py memory') == 1


def test_a_recorded_command_writes_what_its_script_printed(tmp_path, monkeypatch,
                                                           capsys) -> None:
    monkeypatch.setattr(sys, 'argv', list(sys.argv))
    monkeypatch.setattr(sys, 'path', list(sys.path))
    monkeypatch.setattr(benchmark, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(benchmark, 'this_machine', lambda: 'box')
    script = tmp_path / 'hello.py'
    script.write_text('import sys\nprint("measured", sys.argv[1:])\n')
    monkeypatch.setitem(benchmark.COMMANDS, 'hello', str(script))
    benchmark.main(['--record', 'hello', '--fast'])
    assert "measured ['--fast']" in capsys.readouterr().out
    assert "measured ['--fast']" in (tmp_path / 'box.md').read_text()
    assert '## benchmark.py hello --fast' in (tmp_path / 'box.md').read_text()
