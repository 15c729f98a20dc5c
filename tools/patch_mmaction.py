"""Make mmaction2 1.2.0 from PyPI importable.

The published wheel's ``mmaction/models/localizers/__init__.py`` imports a ``drn``
sub-package that the wheel does not ship (upstream issue #2714), so
``import mmaction.models`` fails. This drops that import (the DRN localizer is the only
thing lost). Running it again changes nothing.
"""
import argparse
import importlib.util
import pathlib
import sys


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    spec = importlib.util.find_spec('mmaction')
    if spec is None or spec.origin is None:
        print('[patch_mmaction] mmaction2 is not installed', file=sys.stderr)
        return 1
    package_dir = pathlib.Path(spec.origin).parent
    init_file = package_dir / 'models' / 'localizers' / '__init__.py'
    if (package_dir / 'models' / 'localizers' / 'drn').is_dir():
        return 0  # a complete install: nothing to patch
    lines = init_file.read_text().splitlines(keepends=True)
    kept = [line for line in lines if 'drn' not in line.split('#')[0] or 'import' not in line]
    if len(kept) != len(lines):
        # DRN is also named in __all__; drop that entry so the names stay consistent.
        text = ''.join(kept).replace("'DRN', ", '').replace(", 'DRN'", '')
        init_file.write_text(text)
        print(f'[patch_mmaction] removed the DRN import from {init_file}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
