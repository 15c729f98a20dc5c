"""Every tool parses its arguments before importing the stack: ``--help`` is immediate."""
import importlib.util
import subprocess
import sys

import pytest

from mutualnet_mm.reliability.data_checks import CHECK_MODES

from .reliability.tiny_detection import REPO, tool_env

TOOLS = sorted(path.name for path in (REPO / 'tools').glob('*.py')
               if not path.name.startswith('_'))
HEAVY = ('torch', 'mutualnet_mm', 'mmcv', 'mmdet', 'mmaction', 'mmpretrain')

# Runs a tool by path with `--help`, printing which heavy packages are imported when it
# parses its arguments.
HARNESS = f'''
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_and_report(self, *args, **kwargs):
    print('imported before parsing:', sorted(m for m in {HEAVY!r} if m in sys.modules))
    return parse(self, *args, **kwargs)
argparse.ArgumentParser.parse_args = parse_and_report
sys.argv = [sys.argv[1], '--help']
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.parametrize('tool', TOOLS)
def test_help_prints_the_usage(tool: str) -> None:
    result = subprocess.run([sys.executable, str(REPO / 'tools' / tool), '--help'],
                            cwd=REPO, env=tool_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('usage:'), result.stdout
    assert not result.stderr  # no warning either


@pytest.mark.parametrize('tool', TOOLS)
def test_arguments_are_parsed_before_the_stack_is_imported(tool: str) -> None:
    result = subprocess.run([sys.executable, '-c', HARNESS, str(REPO / 'tools' / tool)],
                            cwd=REPO, env=tool_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'imported before parsing: []\n' in result.stdout, result.stdout


def test_the_check_data_choices_are_the_checks_modes() -> None:
    spec = importlib.util.spec_from_file_location('tool_arguments',
                                                  REPO / 'tools' / '_arguments.py')
    arguments = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arguments)
    assert arguments.CHECK_MODES == CHECK_MODES
