"""One entry point for the benchmarks: ``python benchmarks/benchmark.py COMMAND [ARGS]``.

Each command runs its script with ``ARGS`` (``COMMAND --help`` lists them); with no
command, or ``--help``, the commands are listed with what each measures.
"""
import os.path as osp
import runpy
import sys
from typing import Dict, List, Optional

#: command -> the script it runs.
COMMANDS: Dict[str, str] = {
    'train': 'train_overhead.py',
    'memory': 'memory.py',
    'inference': 'inference.py',
    'features': 'feature_extractor.py',
    'switch': 'switch_cost.py',
    'cost': 'detector_cost.py',
    'scan': 'checkpoint_scan.py',
    'eta': 'eta.py',
    'method-study': 'method_study.py',
    'cls-method-study': 'cls_method_study.py',
}
HERE = osp.dirname(osp.abspath(__file__))


def summary(script: str) -> str:
    """The first line of a script's docstring."""
    with open(osp.join(HERE, script)) as handle:
        for line in handle:
            text = line.strip().strip('"').strip()
            if text:
                return text
    return ''


def usage() -> str:
    width = max(map(len, COMMANDS))
    return '\n'.join([__doc__.splitlines()[0], '', 'commands:'] + [
        f'  {name:<{width}}  {summary(script)}' for name, script in COMMANDS.items()])


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f'unknown command {command!r}; allowed: {", ".join(COMMANDS)}')
    script = osp.join(HERE, COMMANDS[command])
    sys.argv = [script, *args]
    sys.path.insert(0, HERE)  # the scripts import their sibling common.py
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
