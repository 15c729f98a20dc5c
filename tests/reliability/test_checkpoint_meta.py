"""The meta fields mmengine's resume reads are checked, naming the file and the field."""
import pytest

from mutualnet_mm.reliability.checkpoint_meta import MAX_SEED, check_resume_meta

FILE = 'work/iter_4.pth'
GOOD = {'epoch': 1, 'iter': 4, 'seed': 0}


@pytest.mark.parametrize('meta', [GOOD, dict(GOOD, iter=8, epoch=2), dict(GOOD, seed=None),
                                  dict(GOOD, seed=MAX_SEED), {'epoch': 0, 'iter': 0}])
def test_a_resumable_meta_passes(meta: dict) -> None:
    check_resume_meta({'meta': meta}, FILE, max_iters=8, max_epochs=2)


@pytest.mark.parametrize('change, message', [
    (dict(iter=1e9), r'meta\.iter must be an integer >= 0, got 1000000000\.0'),
    (dict(iter=10**9), r'meta\.iter 1000000000 is beyond the schedule of this run \(max_iters '
                       r'8\), so resuming would train nothing; allowed: 0 to 8'),
    (dict(epoch=3), r'meta\.epoch 3 is beyond the schedule of this run \(max_epochs 2\)'),
    (dict(epoch='1'), r"meta\.epoch must be an integer >= 0, got '1'"),
    (dict(epoch=None), r'meta\.epoch must be an integer >= 0, got None'),
    (dict(iter=-1), r'meta\.iter must be an integer >= 0, got -1'),
    (dict(iter=True), r'meta\.iter must be an integer >= 0, got True'),
    (dict(seed=2**40), r'meta\.seed is 1099511627776; allowed: an integer from 0 to 2\*\*32 - 1 '
                       r'\(4294967295, the seeds numpy accepts\) or none'),
    (dict(seed=-1), r'meta\.seed is -1; allowed'),
    (dict(seed='0'), r"meta\.seed is '0'; allowed"),
])
def test_a_bad_meta_field_is_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"checkpoint '{FILE}': {message}"):
        check_resume_meta({'meta': dict(GOOD, **change)}, FILE, max_iters=8, max_epochs=2)


def test_iteration_schedules_leave_the_epoch_unchecked() -> None:
    check_resume_meta({'meta': dict(GOOD, epoch=5)}, FILE, max_iters=8)
    with pytest.raises(ValueError, match=r'meta\.iter 9 is beyond'):
        check_resume_meta({'meta': dict(GOOD, iter=9)}, FILE, max_iters=8)


@pytest.mark.parametrize('checkpoint', [{'state_dict': {}}, {'meta': [1]}, [1, 2]])
def test_a_checkpoint_without_meta_is_named(checkpoint: object) -> None:
    with pytest.raises(ValueError, match=rf"checkpoint '{FILE}' has no meta dict"):
        check_resume_meta(checkpoint, FILE, max_iters=8, max_epochs=2)
