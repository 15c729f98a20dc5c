"""Files (``atomic_write``) and directories (``replaced_directory``) are whole or absent."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mutualnet_mm.reliability import fileio
from mutualnet_mm.reliability.fileio import (
    atomic_write,
    check_replaceable,
    remove_stale_temporaries,
    replaced_directory,
    temporary_path,
    write_error,
    write_text_atomically,
)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / 'table.json'
    write_text_atomically(str(path), 'old')

    def fill_the_disk(temporary: str) -> None:
        with open(temporary, 'w') as f:
            f.write('half')
        raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(OSError, match='No space left'):
        atomic_write(str(path), fill_the_disk)
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['table.json']
    write_text_atomically(str(path), 'new')
    assert path.read_text() == 'new'


def test_the_temporary_keeps_the_extension(tmp_path) -> None:
    seen = []
    atomic_write(str(tmp_path / 'plot.png'), lambda temporary: (
        seen.append(temporary), open(temporary, 'w').close()))
    assert seen[0].endswith('.png') and seen[0] != str(tmp_path / 'plot.png')


# ------------------------------------------------------------------ temporaries
DEAD_PID = 99999999  # above any pid_max: no such process


def test_a_temporary_is_created_exclusively_never_through_a_link(tmp_path) -> None:
    path, victim = tmp_path / 'table.json', tmp_path / 'victim.txt'
    victim.write_text('kept')
    temporary = Path(temporary_path(str(path)))
    temporary.symlink_to(victim)
    with pytest.raises(FileExistsError, match='exists and is not a regular file'):
        write_text_atomically(str(path), 'new')
    assert victim.read_text() == 'kept' and temporary.is_symlink() and not path.exists()
    temporary.unlink()
    temporary.write_text('left by an earlier process with this id')
    write_text_atomically(str(path), 'new')
    assert path.read_text() == 'new' and not temporary.exists()


def test_only_our_stale_temporaries_are_swept(tmp_path) -> None:
    def ours(name: str) -> bool:
        return name == 'a.json'

    stale = tmp_path / f'.a.json.{DEAD_PID}.tmp.json'
    running = tmp_path / f'.a.json.{os.getppid()}.tmp.json'  # its writer still runs
    others = [tmp_path / f'.notes.txt.{DEAD_PID}.tmp.txt', tmp_path / 'a.json.saving',
              tmp_path / f'.a.json.{DEAD_PID}.tmp.csv']  # not the temporary's form
    for path in [stale, running, *others]:
        path.write_text('x')
    link = tmp_path / f'.a.json.{DEAD_PID + 1}.tmp.json'
    link.symlink_to(tmp_path / 'a.json.saving')
    folder = tmp_path / f'.a.json.{DEAD_PID + 2}.tmp.json'
    folder.mkdir()
    assert remove_stale_temporaries(str(tmp_path), ours) == [str(stale)]
    assert all(p.exists() for p in [running, *others, link, folder])


# ------------------------------------------------------------ whole directories
# A child process writes a new version ('new') of an export-like directory holding the
# old one ('old') and is killed (os._exit) at a step; the directory must hold one whole
# version, or (between the two renames of the fallback) be missing with the old version
# aside, which the next call puts back.
KILLED_WRITER = '''
import importlib.util, os, shutil, sys
spec = importlib.util.spec_from_file_location('fileio', sys.argv[1])
fileio = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fileio)
out, kill_at, exchange = sys.argv[2:]
if exchange == 'unsupported':
    fileio.exchange_paths = lambda first, second: False
renames, rename, rmtree = [], os.rename, shutil.rmtree

def counted_rename(source, target):
    renames.append(target)
    if kill_at == f'rename{len(renames)}':
        os._exit(9)
    rename(source, target)

def killed_rmtree(path, *args, **kwargs):
    if kill_at == 'rmtree':
        os._exit(9)
    rmtree(path, *args, **kwargs)

os.rename, shutil.rmtree = counted_rename, killed_rmtree
with fileio.replaced_directory(out, ('config.py', 'model.pth')) as staging:
    open(os.path.join(staging, 'config.py'), 'w').write('new')
    if kill_at == 'writing':
        os._exit(9)
    open(os.path.join(staging, 'model.pth'), 'w').write('new')
'''


def write_version(out: Path, kill_at: str, exchange: str) -> int:
    run = subprocess.run([sys.executable, '-c', KILLED_WRITER, fileio.__file__, str(out),
                          kill_at, exchange], capture_output=True, text=True, timeout=60)
    assert run.returncode in (0, 9), run.stderr
    return run.returncode


def version(out: Path) -> str:
    """The version the directory holds; both files must agree."""
    assert sorted(os.listdir(out)) == ['config.py', 'model.pth']
    config, model = (out / 'config.py').read_text(), (out / 'model.pth').read_text()
    assert config == model, 'a config of one version beside the weights of another'
    return config


@pytest.mark.parametrize('exchange, kill_at, after_kill', [
    ('supported', 'writing', 'old'),
    ('supported', 'rmtree', 'new'),  # swapped, the old version not yet removed
    ('unsupported', 'writing', 'old'),
    ('unsupported', 'rename1', 'old'),  # before the old version is renamed aside
    ('unsupported', 'rename2', None),  # between the two renames: missing, old aside
    ('unsupported', 'rmtree', 'new'),
])
def test_a_directory_killed_at_any_step_holds_one_whole_version(
        tmp_path, exchange: str, kill_at: str, after_kill) -> None:
    out = tmp_path / 'export'
    out.mkdir()
    (out / 'config.py').write_text('old')
    (out / 'model.pth').write_text('old')
    assert write_version(out, kill_at, exchange) == 9
    if after_kill is None:
        assert not out.exists()
        aside = [p for p in tmp_path.iterdir() if p.name.endswith('.previous')]
        assert len(aside) == 1 and version(aside[0]) == 'old'
    else:
        assert version(out) == after_kill
    # The next write recovers: a killed one leaves the old version (put back if aside) ...
    write_version(out, 'writing', exchange)
    assert version(out) == ('new' if after_kill == 'new' else 'old')
    # ... a complete one the new version; nothing is left beside it.
    assert write_version(out, 'none', exchange) == 0
    assert version(out) == 'new'
    assert sorted(os.listdir(tmp_path)) == ['export']


def test_a_directory_holding_other_files_is_not_replaced(tmp_path) -> None:
    out = tmp_path / 'exported'
    out.mkdir()
    (out / 'model.pth').write_text('old')
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match=r"holds \['notes.txt'\], which it would replace as a "
                                         r'whole'):
        with replaced_directory(str(out), ('config.py', 'model.pth')):
            pass
    link = tmp_path / 'link'
    link.symlink_to(out)
    with pytest.raises(ValueError, match='exists and is not a directory'):
        check_replaceable(str(link), ('config.py', 'model.pth'))
    assert sorted(os.listdir(tmp_path)) == ['exported', 'link']
    assert (out / 'notes.txt').read_text() == 'mine'


def test_a_failed_directory_write_leaves_the_old_version_and_no_staging(tmp_path) -> None:
    out = tmp_path / 'export'
    with replaced_directory(str(out), ('model.pth',)) as staging:
        Path(staging, 'model.pth').write_text('old')
    with pytest.raises(OSError, match='No space left'):
        with replaced_directory(str(out), ('model.pth',)) as staging:
            Path(staging, 'model.pth').write_text('ne')
            raise OSError(errno.ENOSPC, 'No space left on device')
    assert (out / 'model.pth').read_text() == 'old'
    assert sorted(os.listdir(tmp_path)) == ['export']


def test_a_directory_of_folders_is_replaced_as_a_whole(tmp_path) -> None:
    out = tmp_path / 'data'
    for version in ('old', 'new'):
        with replaced_directory(str(out), ('train', 'meta.json')) as staging:
            Path(staging, 'train').mkdir()
            Path(staging, 'train', 'a.jpg').write_text(version)
            Path(staging, 'meta.json').write_text(version)
    assert (out / 'train' / 'a.jpg').read_text() == (out / 'meta.json').read_text() == 'new'
    assert sorted(os.listdir(tmp_path)) == ['data']


def test_write_error_names_a_full_disk(tmp_path) -> None:
    message = write_error(OSError(errno.ENOSPC, 'No space left on device'), 'model.pth',
                          str(tmp_path), 'export again')
    assert message.startswith(f'could not save model.pth in {tmp_path}: No space left on '
                              'device (disk full: free space there and export again); ')
    assert message.endswith('MiB free')
    assert 'disk full' not in write_error(OSError(errno.EIO, 'I/O error'), 'x',
                                          str(tmp_path), 'retry')
