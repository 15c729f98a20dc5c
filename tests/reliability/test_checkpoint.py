"""Safe checkpoint loading: mmengine resumes with weights_only; unsafe or broken files fail."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, load_from_http
from torch import nn
from torch.utils.data import Dataset

import mutualnet_mm  # noqa: F401  (allow-lists mmengine's checkpoint classes)
from mutualnet_mm.reliability.checkpoint import load_checkpoint_safely

from . import checkpoint_payloads as payloads


class TinyRegressor(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        return {'loss': ((self.linear(inputs).squeeze(1) - targets) ** 2).mean()}


class TinyDataset(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(2, generator=generator), targets=torch.tensor(index / 8))


class RecordStart(Hook):
    """Records the iteration and the weights the training starts from."""

    def before_train(self, runner) -> None:
        self.start_iter = runner.iter
        self.start_weights = {k: v.clone() for k, v in runner.model.state_dict().items()}


def make_runner(work_dir, max_iters: int, name: str, resume: bool = False) -> Runner:
    return Runner(
        model=TinyRegressor(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=TinyDataset(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=[RecordStart()], resume=resume, randomness=dict(seed=0),
        default_scope=None)


def test_runner_resumes_its_checkpoint_with_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '1')  # every torch.load is weights_only
    make_runner(tmp_path, max_iters=2, name='first').train()
    # ``import mutualnet_mm`` alone makes mmengine's own checkpoints weights_only-loadable.
    checkpoint = torch.load(tmp_path / 'iter_2.pth', weights_only=True)
    assert checkpoint['meta']['iter'] == 2
    assert isinstance(checkpoint['message_hub']['log_scalars']['train/loss'], HistoryBuffer)

    runner = make_runner(tmp_path, max_iters=3, name='resumed', resume=True)
    runner.train()
    record = next(hook for hook in runner.hooks if isinstance(hook, RecordStart))
    assert record.start_iter == 2
    assert runner.iter == 3
    for key, value in checkpoint['state_dict'].items():
        assert torch.equal(record.start_weights[key], value), key
    # The resumed log history carries on from the first run's.
    resumed_loss = runner.message_hub.get_scalar('train/loss')
    assert len(resumed_loss.data[0]) == 3
    assert resumed_loss.mean(3) == pytest.approx(resumed_loss.data[0].mean())


class Payload:
    def __init__(self) -> None:
        self.value = 1


class SneakyGetattr:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``, beyond the allowed statistics."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


@pytest.mark.parametrize('payload, named', [
    (os.system, 'system'), (Payload(), 'Payload'), (print, 'print'),
    (SneakyGetattr(), "getattr(<class 'mmengine.logging.history_buffer.HistoryBuffer'>"),
])
def test_refuses_pickled_objects_and_names_them(tmp_path, payload, named):
    path = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': payload}, path)
    with pytest.raises(pickle.UnpicklingError, match='refused to load') as error:
        load_checkpoint_safely(path)
    assert str(path) in str(error.value)
    assert named in str(error.value)


def test_truncated_missing_and_garbage_files_fail_clearly(tmp_path):
    path = tmp_path / 'model.pth'
    torch.save({'state_dict': {'w': torch.ones(64)}}, path)
    assert torch.equal(load_checkpoint_safely(path)['state_dict']['w'], torch.ones(64))
    contents = {'truncated.pth': path.read_bytes()[:-100], 'empty.pth': b'',
                'garbage.pth': b'not a checkpoint' * 8}
    for name, content in contents.items():
        broken = tmp_path / name
        broken.write_bytes(content)
        with pytest.raises(ValueError, match='truncated or corrupt') as error:
            load_checkpoint_safely(broken)
        assert str(broken) in str(error.value)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_safely(tmp_path / 'missing.pth')


def test_mmengine_url_loading_is_weights_only(tmp_path):
    safe, unsafe = tmp_path / 'safe.pth', tmp_path / 'unsafe.pth'
    torch.save({'w': torch.arange(3.)}, safe)
    torch.save({'w': torch.arange(3.), 'hook': os.system}, unsafe)
    cache = tmp_path / 'cache'
    loaded = load_from_http(safe.as_uri(), map_location='cpu', model_dir=str(cache))
    assert torch.equal(loaded['w'], torch.arange(3.))
    with pytest.raises(pickle.UnpicklingError, match='system'):
        load_from_http(unsafe.as_uri(), map_location='cpu', model_dir=str(cache))


# One test per attack class: each payload would show if it worked (a file written, a
# class-wide table changed, memory taken, the process corrupted).
PAYLOADS = {
    'object-flagged dtype': lambda: payloads.object_flagged_dtype_array(),
    'huge object array': lambda: payloads.huge_object_array(),
    'shared bytes amplification': lambda: payloads.shared_bytes_arrays(),
    'stride-0 tensor': lambda: payloads.stride_zero_tensor(),
}


@pytest.mark.parametrize('loader', ['load_checkpoint_safely', 'mmengine'])
@pytest.mark.parametrize('name', sorted(PAYLOADS))
def test_memory_and_dtype_payloads_are_refused(tmp_path, name, loader):
    path = payloads.save(tmp_path / 'crafted.pth', {'extra': PAYLOADS[name]()})
    assert path.stat().st_size < 100_000
    load = load_checkpoint_safely if loader == 'load_checkpoint_safely' else _load_checkpoint
    with pytest.raises(pickle.UnpicklingError, match='refused') as error:
        load(str(path))
    assert str(path) in str(error.value)


def test_history_buffer_state_cannot_change_the_class_table(tmp_path):
    path = payloads.save_history_buffer_swapping_statistics(tmp_path / 'crafted.pth')
    with pytest.raises(pickle.UnpicklingError, match='statistics methods'):
        load_checkpoint_safely(path)
    assert HistoryBuffer([1.0, 2.0, 3.0], [1, 1, 1]).statistics('mean') == 2.0


def test_numeric_numpy_content_round_trips(tmp_path):
    arrays = {'f8': np.arange(6.0).reshape(2, 3), 'big-endian': np.arange(3, dtype='>i4'),
              'fortran': np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              'bool': np.array([True, False]), 'empty': np.zeros((0, 2), dtype='f4'),
              'scalar': np.float64(2.5), 'dtype': np.dtype('i8')}
    buffer = HistoryBuffer([1.0, 5.0], [1, 2])
    path = payloads.save(tmp_path / 'numpy.pth', {'arrays': arrays, 'buffer': buffer,
                                                  'nested': [(arrays['f8'],)]})
    loaded = load_checkpoint_safely(path)
    for key, value in arrays.items():
        assert type(loaded['arrays'][key]) is type(value), key
        np.testing.assert_array_equal(loaded['arrays'][key], value)
        if isinstance(value, np.ndarray):
            assert loaded['arrays'][key].dtype == value.dtype, key
            assert loaded['arrays'][key].flags.writeable, key
    assert type(loaded['buffer']) is HistoryBuffer
    assert loaded['buffer'].statistics('mean') == 2.0  # sum of logs / sum of counts
    np.testing.assert_array_equal(loaded['nested'][0][0], arrays['f8'])


def test_a_config_stored_in_a_checkpoint_is_never_executed(tmp_path):
    marker = tmp_path / 'executed.txt'
    path = payloads.save(tmp_path / 'crafted.pth',
                         {'meta': {'iter': 0, 'config': payloads.config_writing(marker)}})
    assert 'config' not in load_checkpoint_safely(path)['meta']
    assert not marker.exists()


@pytest.mark.parametrize('automatic', [False, True], ids=['explicit', 'automatic'])
def test_resume_does_not_execute_the_checkpoint_config(tmp_path, automatic):
    make_runner(tmp_path, max_iters=2, name='first').train()
    marker = tmp_path / 'executed.txt'
    checkpoint = load_checkpoint_safely(tmp_path / 'iter_2.pth')
    checkpoint['meta']['config'] = payloads.config_writing(marker)
    torch.save(checkpoint, tmp_path / 'iter_2.pth')
    runner = make_runner(tmp_path, max_iters=3, name='resumed', resume=True)
    if not automatic:
        runner._load_from = str(tmp_path / 'iter_2.pth')
    runner.train()
    assert runner.iter == 3
    assert not marker.exists(), 'the checkpoint config was executed'
