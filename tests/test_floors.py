"""The package's floors: every module imports only from its own floor or the floors below."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'mutualnet_mm'
#: Floors, lowest first (docs/advanced_guides/design.md, "Layout").
FLOORS = {
    'checks': 0, 'registry': 0, 'tasks': 0,
    'ops': 1,
    'models': 2,
    'reliability': 3,
    'datasets': 4,
    'engine': 5,
    'evaluation': 6,
    'deploy': 7,
    'apis': 8, 'tools_common': 8,
}


def floor_of(module: str) -> int:
    """The floor of ``mutualnet_mm.<module>`` (its top-level part)."""
    return FLOORS[module.split('.')[0]]


def imported_modules(path: Path) -> list:
    """``(line, module)`` of every ``mutualnet_mm`` module ``path`` imports, lazily or not."""
    parts = path.relative_to(PACKAGE).with_suffix('').parts
    package = parts[:-1] if parts[-1] != '__init__' else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - node.level + 1])
            target = '.'.join(base + ([node.module] if node.module else []))
            if not target:  # `from . import x` in the package's own __init__
                found += [(node.lineno, alias.name) for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) \
                else [node.module or '']
            found += [(node.lineno, name.partition('.')[2]) for name in names
                      if name.startswith('mutualnet_mm.')]
    return found


MODULES = sorted(p for p in PACKAGE.rglob('*.py') if p != PACKAGE / '__init__.py')


@pytest.mark.parametrize('path', MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_floor_above_its_own(path):
    own = floor_of('.'.join(path.relative_to(PACKAGE).with_suffix('').parts))
    upward = [(line, module) for line, module in imported_modules(path)
              if floor_of(module) > own]
    assert not upward, f'{path.relative_to(PACKAGE)} imports from a floor above its own: {upward}'


def test_every_top_level_module_has_a_floor():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == '.py' and p.stem != '__init__') or (p / '__init__.py').exists()}
    assert names == set(FLOORS)
