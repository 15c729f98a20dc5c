"""The scan before unpickling: crafted files are refused, real checkpoints pass, fast.

Each attack is built at a harmless size: what it asks for relative to its file size is
what a real one would scale up. Every loader goes through ``load_checkpoint_safely``
(``tests/reliability/test_checkpoint_entry_points.py``), so these test it and mmengine's
loader directly.
"""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import mutualnet_mm  # noqa: F401  (routes mmengine's loader through load_checkpoint_safely)
from mutualnet_mm.reliability.checkpoint import load_checkpoint_safely
from mutualnet_mm.reliability.checkpoint_scan import (
    MAX_NESTING,
    CheckpointRefusedError,
    scan_checkpoint,
)

from . import checkpoint_payloads as payloads

HUGE = payloads.HUGE


def crafted(tmp_path, extra) -> str:
    return str(payloads.save(tmp_path / 'crafted.pth', extra))


# name -> (build the file in tmp_path, the words the refusal must contain)
ATTACKS = {
    'bytearray(50 MB) in the metadata': (
        lambda tmp: crafted(tmp, {'meta': {'note': payloads.big_bytearray()}}),
        'builtins.bytearray'),
    'deflated storage (10 MB of zeros)': (
        lambda tmp: str(payloads.deflated(payloads.save(tmp / 'crafted.pth',
                                                        {'big': torch.zeros(2_500_000)}))),
        'compressed archive member'),
    'shared lists 2**20 paths': (
        lambda tmp: crafted(tmp, {'meta': payloads.shared_lists(20)}),
        'shared references'),
    'shared tuples 2**20 paths': (
        lambda tmp: crafted(tmp, {'meta': payloads.shared_tuples(20)}),
        'shared references'),
    'shared lists 2**40 paths (never finishes unbounded)': (
        lambda tmp: crafted(tmp, {'meta': payloads.shared_lists(40)}),
        'shared references'),
    'tuple nested 1000 deep as a dict key': (
        lambda tmp: str(payloads.with_data_pickle(
            payloads.save(tmp / 'crafted.pth', {}), payloads.deep_tuple_key_pickle(1000))),
        f'nested deeper than {MAX_NESTING}'),
    'stride-0 view as a dict key': (
        lambda tmp: crafted(tmp, {'extra': {payloads.stride_zero_tensor(): 0}}),
        'larger than its storage'),
    'stride-0 view in a set': (
        lambda tmp: crafted(tmp, {'extra': {payloads.stride_zero_tensor()}}),
        'larger than its storage'),
    'meta tensor of 1e12 elements': (
        lambda tmp: crafted(tmp, {'extra': torch.empty(10 ** 12, device='meta')}),
        '_rebuild_meta_tensor_no_storage'),
}


@pytest.mark.parametrize('loader', ['load_checkpoint_safely', 'mmengine'])
@pytest.mark.parametrize('attack', sorted(ATTACKS))
def test_crafted_files_are_refused_before_unpickling(tmp_path, attack, loader):
    build, words = ATTACKS[attack]
    path = build(tmp_path)
    load = load_checkpoint_safely if loader == 'load_checkpoint_safely' else _load_checkpoint
    with pytest.raises(pickle.UnpicklingError, match='refused to load') as error:
        load(path)
    assert path in str(error.value)
    assert words in str(error.value)


def test_each_attack_loads_with_torch_alone(tmp_path):
    # The attacks are real: plain weights-only torch.load accepts every one that does not
    # hang or crash it (sizes here are harmless).
    for attack in ('bytearray(50 MB) in the metadata', 'deflated storage (10 MB of zeros)',
                   'stride-0 view as a dict key', 'meta tensor of 1e12 elements'):
        folder = tmp_path / attack.replace(' ', '_')
        folder.mkdir()
        path = ATTACKS[attack][0](folder)
        assert len(open(path, 'rb').read()) < 100_000
        torch.load(path, weights_only=True)


@pytest.mark.slow
def test_a_tuple_300000_deep_is_refused_not_a_crash(tmp_path):
    # Hashing it as a dict key overflows the C stack inside torch.load (SIGSEGV).
    path = payloads.with_data_pickle(payloads.save(tmp_path / 'crafted.pth', {}),
                                     payloads.deep_tuple_key_pickle(300_000))
    code = ('import pickle, sys\nfrom mutualnet_mm.reliability.checkpoint import '
            'load_checkpoint_safely\ntry:\n    load_checkpoint_safely(sys.argv[1])\n'
            'except pickle.UnpicklingError as error:\n    print(error)\n')
    done = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f'nested deeper than {MAX_NESTING}' in done.stdout


def test_shared_references_cost_their_file_size_not_their_paths(tmp_path):
    # 2**12 paths, within the bound: one object per level, loaded and resolved once each.
    path = crafted(tmp_path, {'meta': {'lists': payloads.shared_lists(12),
                                       'arrays': [np.arange(3.0)] * 1000}})
    loaded = load_checkpoint_safely(path)['meta']
    assert loaded['lists'][0] is loaded['lists'][1]
    assert all(array is loaded['arrays'][0] for array in loaded['arrays'])
    np.testing.assert_array_equal(loaded['arrays'][0], np.arange(3.0))


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_real_content_passes_in_both_torch_formats(tmp_path, zip_format):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4])
    checkpoint = {'state_dict': model.state_dict(), 'optimizer': optimizer.state_dict(),
                  'scheduler': scheduler.state_dict(), 'set': {1, 'a'},
                  'meta': {'classes': ('a', 'b'), 'rng': torch.get_rng_state(),
                           'shared': [model.state_dict()['0.weight']] * 2, 'complex': 1 + 2j,
                           'numpy': np.arange(4, dtype='i8'), 'view': torch.arange(10.)[2:5]}}
    path = tmp_path / 'real.pth'
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    loaded = load_checkpoint_safely(path)
    for key, value in checkpoint['state_dict'].items():
        assert torch.equal(loaded['state_dict'][key], value), key
    assert loaded['scheduler']['milestones'] == checkpoint['scheduler']['milestones']
    assert torch.equal(loaded['meta']['view'], torch.arange(2., 5.))
    assert loaded['set'] == {1, 'a'} and loaded['meta']['complex'] == 1 + 2j


def test_legacy_storage_claimed_larger_than_the_file_is_refused(tmp_path):
    # The legacy loader allocates each storage at its claimed size before reading it.
    path = tmp_path / 'legacy.pth'
    torch.save({'w': torch.ones(4)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    claimed = pickle.dumps(4, protocol=2)[2:-1]  # BININT1 4 (the numel in the storage id)
    assert data.count(claimed) >= 1
    huge = b'J' + (50_000_000).to_bytes(4, 'little')  # BININT 5e7
    at = data.index(b'cpu') + data[data.index(b'cpu'):].index(claimed)
    path.write_bytes(data[:at] + huge + data[at + len(claimed):])
    with pytest.raises(pickle.UnpicklingError, match='200000000 bytes'):
        load_checkpoint_safely(path)


@pytest.mark.parametrize('content, words', [
    (b'\x80\x02]q\x00h\x00a.', 'contains itself'),  # x = []; x.append(x)
    (b'\x80\x02]]q\x00ah\x00Na.', 'already placed'),  # fill a list after using it
    (b'\x80\x02cposix\nsystem\nq\x00.', 'global posix.system'),
    (b'\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00utf16\x86R.', 'latin1'),
])
def test_pickle_shapes_no_checkpoint_has_are_refused(tmp_path, content, words):
    path = payloads.with_data_pickle(payloads.save(tmp_path / 'crafted.pth', {}), content)
    with pytest.raises(CheckpointRefusedError, match=words):
        scan_checkpoint(str(path))


def test_malformed_pickles_are_corrupt_files(tmp_path):
    for content in (b'\x80\x02N', b'\x80\x02NN.', b'\x80\x02h\x05.', b'\x80\x02X\xff\xff\x00\x00a',
                    b'\x80\x02I1\n.'):
        path = payloads.with_data_pickle(payloads.save(tmp_path / 'crafted.pth', {}), content)
        with pytest.raises(ValueError, match='truncated or corrupt'):
            load_checkpoint_safely(path)

