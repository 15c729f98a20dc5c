"""One entry point for the benchmarks: ``python benchmarks/benchmark.py COMMAND [ARGS]``.

Each command runs its script with ``ARGS`` (``COMMAND --help`` lists them); with no
command, or ``--help``, the commands are listed with what each measures. With
``--record`` before the command, what the script prints also replaces its section (one
per command line) in the results file of this machine and software stack,
``results/<machine>.md``.
"""
import contextlib
import io
import os
import os.path as osp
import re
import runpy
import sys
from typing import Dict, List, Optional, TextIO

#: command -> the script it runs.
COMMANDS: Dict[str, str] = {
    'train': 'train_overhead.py',
    'memory': 'memory.py',
    'inference': 'inference.py',
    'features': 'feature_extractor.py',
    'switch': 'switch_cost.py',
    'cost': 'detector_cost.py',
    'rtmdet-cost': 'rtmdet_cost.py',
    'scan': 'checkpoint_scan.py',
    'eta': 'eta.py',
}
HERE = osp.dirname(osp.abspath(__file__))
RESULTS = osp.join(HERE, 'results')
FENCE = '```'


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


def _slug(text: str) -> str:
    return re.sub(r'[^a-z0-9.]+', '-', text.lower()).strip('-')


def machine_key(cpu: str, cores: int, torch_version: str, gpu: Optional[str] = None) -> str:
    """The name of a machine's results file: CPU, cores, torch release and GPU.

    >>> machine_key('Intel(R) Xeon(R) Processor', 2, '2.13.0+cu130')
    'intel-xeon-processor_2-cores_torch-2.13.0'
    """
    cpu = re.sub(r'\((R|TM)\)|\bCPU\b|@.*', ' ', cpu, flags=re.IGNORECASE)
    parts = [_slug(cpu), f'{cores}-cores', f'torch-{torch_version.split("+")[0]}']
    return '_'.join(parts + ([_slug(gpu)] if gpu else []))


def this_machine() -> str:
    """:func:`machine_key` of the machine this runs on."""
    import torch
    from common import cpu_model
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return machine_key(cpu_model(), os.cpu_count() or 1, torch.__version__, gpu)


def replace_section(text: str, heading: str, body: str) -> str:
    """A results file's ``text`` with the section ``## heading`` set to ``body``.

    Sections are level-2 headings outside code fences; a new heading is appended.
    """
    lines, start, end, fenced = text.splitlines(), None, None, False
    for index, line in enumerate(lines):
        if line.startswith(FENCE):
            fenced = not fenced
        elif not fenced and line.startswith('## '):
            if start is not None:
                end = index
                break
            if line[3:].strip() == heading:
                start = index
    section = [f'## {heading}', '', FENCE + 'text', *body.rstrip('\n').splitlines(), FENCE, '']
    if start is None:
        kept = lines + [''] if lines and lines[-1] else lines
        return '\n'.join(kept + section).rstrip('\n') + '\n'
    tail = lines[end:] if end is not None else []
    return '\n'.join(lines[:start] + section + tail).rstrip('\n') + '\n'


class _Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def record(heading: str, output: str, machine: Optional[str] = None) -> str:
    """Replace the section ``heading`` of this machine's results file with ``output``.

    Returns:
        The results file's path.
    """
    from mutualnet_mm.reliability.fileio import write_text_atomically
    path = osp.join(RESULTS, f'{machine or this_machine()}.md')
    text = ''
    if osp.exists(path):
        with open(path) as handle:
            text = handle.read()
    else:
        text = f'# Benchmark results: {osp.basename(path)[:-3]}\n'
    write_text_atomically(path, replace_section(text, heading, output))
    return path


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    recording = bool(argv) and argv[0] == '--record'
    argv = argv[recording:]
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f'unknown command {command!r}; allowed: {", ".join(COMMANDS)}')
    script = osp.join(HERE, COMMANDS[command])
    sys.argv = [script, *args]
    sys.path.insert(0, HERE)  # the scripts import their sibling common.py
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee) if recording else contextlib.nullcontext():
        runpy.run_path(script, run_name='__main__')
    if recording:
        path = record(' '.join(['benchmark.py', command, *args]), tee.copy.getvalue())
        print(f'recorded in {osp.relpath(path)}')


if __name__ == '__main__':
    main()
