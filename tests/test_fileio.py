"""A file written through ``atomic_write`` is whole or absent, never half written."""
import errno

import pytest

from mutualnet_mm.fileio import atomic_write, write_text_atomically


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
