"""Two CPU processes (gloo) against one: the mutual step, BN calibration, random states,
kept slices.

Each process runs the real ``MutualTrainStep`` on a real ``MMDistributedDataParallel``
with a real ``OptimWrapper`` on its half of every global batch; one process runs the
same step on the whole batches. Without batch norm and with a per-sample mean loss the
two must end with the same parameters, and every rank must have run every pass. The
ranks also run the ETA's trial of each cohort before its step (undone: it changes
nothing).
"""
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper

from mutualnet_mm.engine import MutualTrainStep, SubnetConfig, VideoBatchRescaler, calibrate_bn
from mutualnet_mm.engine.eta import time_cohort_passes
from mutualnet_mm.engine.hooks import RANDOM_STATE_KEY, TorchRandomStateHook
from mutualnet_mm.ops import SlimmableSyncBatchNorm, set_width
from mutualnet_mm.tools_common import leave_distributed

from .tiny_video_net import build, make_batches, shard

# Meant to keep the multi-process tests on one xdist worker (make test: --dist
# loadgroup); pytest-xdist 3.8 may still run these modules on both workers at once, so
# each must be safe beside the others (file stores or ports from free_port()).
pytestmark = [pytest.mark.xdist_group('multiprocess'), pytest.mark.slow]

WORLD_SIZE = 2
ITERATIONS = 3
GLOBAL_BATCH = 4
MUTUAL = dict(num_subnets=4, scales=(1.0, 0.75, 0.5), frames=(4, 2),
              rescaler=dict(type='VideoBatchRescaler'))
CALIBRATION_CONFIG = SubnetConfig(0.5, 0.75, 2)
CALIBRATION_BATCHES_PER_RANK = 2
# float32 sums in another order (per-rank means, averaged by all-reduce) differ in the
# last bits; measured: about 1e-7.
TOLERANCE = 1e-6


def optim_wrapper(model: torch.nn.Module) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                                        weight_decay=1e-4))


def train(model, module, batches, trials: bool = False) -> None:
    """``trials``: before each step, a trial of its cohort (the ETA's, undone)."""
    step = MutualTrainStep.from_config(MUTUAL, model, seed=0)
    wrapper = optim_wrapper(module)
    for iteration, batch in enumerate(batches):
        if trials:
            recorded = len(module.passes)
            time_cohort_passes(step, model, batch, wrapper, iteration)
            del module.passes[recorded:]
        step(model, batch, wrapper, iteration)


def calibration_batches() -> list:
    return make_batches(WORLD_SIZE * CALIBRATION_BATCHES_PER_RANK, 2, seed=1)


def worker(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    # A file store in this run's own folder: no port another run could take meanwhile.
    # A stuck collective fails after 2 minutes (the whole test takes seconds) instead of
    # gloo's default 30.
    dist.init_process_group('gloo', init_method=f'file://{out_dir}/store', rank=rank,
                            world_size=WORLD_SIZE, timeout=timedelta(minutes=2))
    try:
        run_rank(rank, out_dir)
    finally:
        leave_distributed()  # the DDP models first, then the group (else a hang, seen)


def evaluate_at_half_width(model: torch.nn.Module) -> torch.Tensor:
    """Logits at width 0.5 without gradients: the slimmable layers use kept slices."""
    model.eval()
    set_width(model, 0.5)
    with torch.no_grad():
        logits = model(make_batches(1, 2, seed=2)[0]['inputs'])
    set_width(model, 1.0)
    model.train()
    return logits


def kept_slices_under_ddp(rank: int) -> dict:
    """Evaluations of a model whose layers kept slices of its first weights, after DDP's
    broadcast from rank 0 (each rank starts from its own weights) and after a mutual
    step, each beside the weights it should have used."""
    module = build(seed=rank)
    first = evaluate_at_half_width(module)
    ddp = MMDistributedDataParallel(module=module, device_ids=None, broadcast_buffers=False)
    results = dict(first=first)
    for stage, batches in (('broadcast', []),
                           ('step', [shard(make_batches(1, GLOBAL_BATCH, seed=3)[0], rank,
                                           WORLD_SIZE)])):
        train(ddp, module, batches)
        results[stage] = evaluate_at_half_width(module)
        results[f'{stage}_weights'] = {k: v.detach().clone()
                                       for k, v in module.state_dict().items()}
    return results


def run_rank(rank: int, out_dir: str) -> None:
    """One rank's training, calibration and random-state gather; its results to a file."""
    module = build()
    ddp = MMDistributedDataParallel(module=module, device_ids=None,
                                    broadcast_buffers=False)
    train(ddp, module, [shard(b, rank, WORLD_SIZE)
                        for b in make_batches(ITERATIONS, GLOBAL_BATCH)], trials=True)

    bn_model = build(with_bn=True)
    mine = calibration_batches()[rank * CALIBRATION_BATCHES_PER_RANK:
                                 (rank + 1) * CALIBRATION_BATCHES_PER_RANK]
    calibrate_bn(MMDistributedDataParallel(module=bn_model, device_ids=None), mine,
                 CALIBRATION_CONFIG, VideoBatchRescaler(), CALIBRATION_BATCHES_PER_RANK)

    try:
        SlimmableSyncBatchNorm(4).train()(torch.ones(2, 4, 3, 3))
        sync_bn_error = ''
    except ValueError as error:
        sync_bn_error = str(error)

    torch.manual_seed(100 + rank)  # a different generator state on each rank
    hook, checkpoint = TorchRandomStateHook(), {}
    hook.after_train_iter(None, 0)  # every rank: gathers the states
    hook.before_save_checkpoint(None, checkpoint)  # what rank 0 writes
    torch.save(dict(params={k: v.detach().clone() for k, v in module.state_dict().items()},
                    passes=module.passes, bn=dict(bn_model.bn1.named_buffers()),
                    own_state=torch.get_rng_state(), gathered=checkpoint[RANDOM_STATE_KEY],
                    sync_bn_error=sync_bn_error, kept=kept_slices_under_ddp(rank)),
               Path(out_dir) / f'rank{rank}.pth')


@pytest.fixture(scope='module')
def ranks(tmp_path_factory) -> list:
    out_dir = tmp_path_factory.mktemp('ddp')
    mp.spawn(worker, args=(str(out_dir),), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out_dir / f'rank{r}.pth', weights_only=True) for r in range(WORLD_SIZE)]


def expected_passes() -> list:
    sampler = MutualTrainStep.from_config(MUTUAL, build(), seed=0).sampler
    passes = []
    for iteration in range(ITERATIONS):
        for config in sampler.cohort(iteration):
            size = round(16 * config.scale)
            passes.append((round(config.width, 6), (config.frames or 4, size, size)))
    return passes


def test_ddp_mutual_step_equals_one_process_on_the_global_batch(ranks) -> None:
    single = build()
    train(single, single, make_batches(ITERATIONS, GLOBAL_BATCH))
    initial = build().state_dict()
    worst = 0.0
    for name, value in single.state_dict().items():
        assert not torch.equal(value, initial[name]), f'{name} did not train'
        for rank in ranks:
            worst = max(worst, (rank['params'][name] - value).abs().max().item())
        # DDP keeps the replicas identical.
        assert torch.equal(ranks[0]['params'][name], ranks[1]['params'][name]), name
    print(f'max |DDP - single process| over parameters: {worst:.3g}')
    assert worst <= TOLERANCE


def test_every_pass_ran_on_every_rank(ranks) -> None:
    passes = expected_passes()
    assert len({width for width, _ in passes}) > 2 and len({s for _, s in passes}) > 2
    for rank in ranks:
        assert rank['passes'] == passes


def test_calibration_averages_statistics_across_ranks(ranks) -> None:
    # One process calibrating on the batches of both ranks (cumulative average over all
    # of them) gets what the ranks get by averaging their own.
    reference = build(with_bn=True)
    calibrate_bn(reference, calibration_batches(), CALIBRATION_CONFIG, VideoBatchRescaler(),
                 WORLD_SIZE * CALIBRATION_BATCHES_PER_RANK)
    rank_only = build(with_bn=True)
    calibrate_bn(rank_only, calibration_batches()[:CALIBRATION_BATCHES_PER_RANK],
                 CALIBRATION_CONFIG, VideoBatchRescaler(), CALIBRATION_BATCHES_PER_RANK)
    active = 8  # channels of bn1 at width 0.5
    for stat in ('running_mean', 'running_var'):
        expected = getattr(reference.bn1, stat)[:active]
        for rank in ranks:
            torch.testing.assert_close(rank['bn'][stat][:active], expected,
                                       rtol=1e-5, atol=1e-6)
        assert not torch.allclose(getattr(rank_only.bn1, stat)[:active], expected, atol=1e-3)


def test_checkpoint_carries_every_ranks_random_state(ranks) -> None:
    for rank in ranks:
        gathered = rank['gathered']
        assert len(gathered) == WORLD_SIZE
        for index, other in enumerate(ranks):
            assert torch.equal(gathered[index]['cpu'], other['own_state'])
    assert not torch.equal(ranks[0]['own_state'], ranks[1]['own_state'])


def test_sync_batch_norm_on_cpu_processes_says_what_to_use(ranks) -> None:
    for rank in ranks:
        assert 'SyncBN' in rank['sync_bn_error'] and "type='BN'" in rank['sync_bn_error']


def test_kept_slices_follow_ddp_broadcast_and_steps(ranks) -> None:
    # Rank 1 started from other weights, kept slices of them, then received rank 0's.
    assert not torch.equal(ranks[0]['kept']['first'], ranks[1]['kept']['first'])
    for rank in ranks:
        kept = rank['kept']
        assert not torch.equal(kept['broadcast'], kept['step'])  # the step changed them
        for stage in ('broadcast', 'step'):
            fresh = build()  # no kept slices: slices its weights as they are now
            fresh.load_state_dict(kept[f'{stage}_weights'])
            assert torch.equal(kept[stage], evaluate_at_half_width(fresh)), stage
