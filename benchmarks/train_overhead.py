"""Training overhead: one mutual iteration versus its plain passes, like for like.

The mutual side is :class:`MutualTrainStep` on one batch: preprocess once, then per
configuration of the cohort set the width, rescale the batch, forward, backward; one
optimizer step. The plain side is, per configuration, the stock twin of that
configuration (``export_config_and_weights``: the stock detector at its widths, carrying
the adaptive model's sliced weights) doing one plain training step as ``train_step`` does
it: its data preprocessor on the configuration's images at their size, forward on exactly
the batch the mutual step gave that configuration (the rescaler's images, boxes, masks and
metainfo), backward, optimizer step. Before each pass torch's random state is set to the
one the mutual step's pass started with, so RoI sampling draws the same RoIs.

Every round starts both sides from the same weights, so every round repeats the same
work. The script prints the evidence: per configuration, the loss and the sampled and
positive RoI counts of the mutual step's pass and of the plain pass, in every round; and
mutual / sum of plain (``--target 1.05`` also prints whether it is within 1.05).

With ``--profile N`` it profiles N iterations of each side with cProfile instead and
prints where each spends its time.

    python benchmarks/train_overhead.py            # demo Mask R-CNN, 128 px, batch 8
    python benchmarks/train_overhead.py --device cuda   # on a GPU (mmcv with CUDA ops)
"""
import argparse
import copy
import cProfile
import io
import pstats
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from common import (
    Case,
    add_device_arg,
    add_model_args,
    add_target_arg,
    build_model,
    config_on_generated_data,
    describe,
    device_clock,
    first_batch,
    generated_data,
    markdown_table,
    median,
    paired_ratio,
    print_device,
    print_footer,
    print_header,
    scope_of,
    spread,
    target_note,
    time_interleaved,
    without_install_dirs,
)
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import Tensor, nn

from mutualnet_mm.deploy import build_stock_model, export_config_and_weights
from mutualnet_mm.engine import MutualTrainStep
from mutualnet_mm.engine.mutual_step import pass_names
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.ops import set_width

#: The RoI heads whose inputs count the RoIs of a pass: every sampled RoI goes through
#: the box head, every positive one through the mask head.
COUNTED_HEADS = (('sampled_rois', 'roi_head.bbox_head'), ('positive_rois', 'roi_head.mask_head'))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_args(parser, size=128, batch_size=8, repeats=10)
    add_device_arg(parser)
    parser.add_argument('--iteration', type=int, default=0,
                        help='the cohort of this training iteration is timed (the config\'s '
                             'warm-up is left out: every iteration trains a cohort)')
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='profile N iterations of each side (cProfile) instead of timing')
    add_target_arg(parser, what='mutual / sum of plain')
    return parser.parse_args()


def build_mutual_side(cfg: Config, seed: int = 0,
                      device: str = 'cpu') -> Tuple[nn.Module, OptimWrapper, MutualTrainStep]:
    """The adaptive model in training mode on ``device``, its optimizer and the mutual step."""
    model = build_model(cfg, seed=seed).to(device).train()
    optim_wrapper = optim_wrapper_of(cfg, model)
    # Without the warm-up (the full network alone), every iteration trains a cohort.
    mutual = {key: value for key, value in (cfg.train_cfg.get('mutual') or {}).items()
              if not key.startswith('full_only')}
    step = MutualTrainStep.from_config(copy.deepcopy(mutual), model, seed=seed)
    return model, optim_wrapper, step


def optim_wrapper_of(cfg: Config, model: nn.Module) -> OptimWrapper:
    """The config's optimizer wrapper over ``model``."""
    with DefaultScope.overwrite_default_scope(scope_of(cfg)):
        return build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))


# ------------------------------------------------------------- what each pass does
@dataclass
class PassRecord:
    """What one training pass of a detector saw and did."""

    loss: float
    counts: Dict[str, int]


class PassCounter:
    """Counts the RoIs each loss-mode pass of a detector sends through its RoI heads.

    Args:
        model: The detector (adaptive or stock: the heads have the same names).
    """

    def __init__(self, model: nn.Module) -> None:
        self.passes: List[Dict[str, int]] = []
        self.handles = [model.register_forward_pre_hook(self._start)]
        for key, name in COUNTED_HEADS:
            head = model.get_submodule(name)
            self.handles.append(head.register_forward_pre_hook(self._counter(key)))

    def _start(self, _module: nn.Module, _args: tuple) -> None:
        self.passes.append({key: 0 for key, _ in COUNTED_HEADS})

    def _counter(self, key: str) -> Callable[[nn.Module, tuple], None]:
        def count(_module: nn.Module, args: tuple) -> None:
            self.passes[-1][key] += args[0].shape[0]
        return count

    def take(self) -> List[Dict[str, int]]:
        """The counts of the passes since the last call."""
        passes, self.passes = self.passes, []
        return passes


@dataclass
class PassBatch:
    """The batch the mutual step gave one configuration, and the random state it drew from.

    Attributes:
        inputs: The rescaled, preprocessed images.
        samples: Their data samples (boxes, masks, metainfo).
        images: The same images as a loader delivers them to the data preprocessor
            (uint8, per image, cut to its shape): what a plain step preprocesses.
        rng_state: Torch's random state at the start of the pass.
    """

    inputs: Tensor
    samples: list
    images: List[Tensor]
    rng_state: Tensor

    def loaded(self, samples: list) -> dict:
        """The images as a loader delivers them, with empty copies of ``samples``: what a
        plain step's data preprocessor is given."""
        return dict(inputs=list(self.images), data_samples=[s.new() for s in samples])


def capture_batches(step: MutualTrainStep, model: nn.Module, optim_wrapper: OptimWrapper,
                    data: dict, iteration: int) -> List[PassBatch]:
    """Run one mutual iteration on a copy of ``data``; return what each pass was given."""
    batches: List[PassBatch] = []

    def capture(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs, samples = args[:2]
        batches.append(PassBatch(inputs.detach().clone(), copy.deepcopy(samples),
                                 loaded_images(inputs, samples, model.data_preprocessor),
                                 torch.get_rng_state()))

    handle = model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        step(model, copy.deepcopy(data), optim_wrapper, iteration)
    finally:
        handle.remove()
    return batches


def loaded_images(inputs: Tensor, samples: Sequence, preprocessor: nn.Module) -> List[Tensor]:
    """Preprocessed ``inputs`` turned back into the images a loader delivers (uint8 on the
    CPU, channels as the preprocessor expects them, each cut to its ``img_shape``)."""
    images = inputs * preprocessor.std + preprocessor.mean
    if getattr(preprocessor, '_channel_conversion', False):
        images = images.flip(1)
    images = images.round().clamp(0, 255).to(torch.uint8)
    return [image[:, :sample.img_shape[0], :sample.img_shape[1]].cpu().clone()
            for image, sample in zip(images, samples)]


def plain_pass(model: nn.Module, optim_wrapper: OptimWrapper, loaded: dict, inputs: Tensor,
               samples: list) -> Tensor:
    """One plain training step, as ``train_step`` runs it, on the mutual step's batch.

    The data preprocessor runs on ``loaded`` (the configuration's images and samples as a
    loader delivers them: what a plain step pays to preprocess them); the forward reads
    ``inputs`` and ``samples``, the batch the mutual step gave the configuration,
    metainfo included (a stock preprocessor would write its own ``pad_shape``).

    Returns:
        The loss.
    """
    with optim_wrapper.optim_context(model):
        model.data_preprocessor(loaded, True)
        losses = model(inputs, samples, mode='loss')
    loss, _ = model.parse_losses(losses)
    optim_wrapper.update_params(loss)
    return loss.detach()


def build_twin(model: nn.Module, cfg: Config, config: SubnetConfig, device: str) -> nn.Module:
    """The stock twin of ``config``, with the adaptive model's current weights, training."""
    stock_cfg, state_dict = export_config_and_weights(model, cfg, config)
    return build_stock_model(stock_cfg, state_dict).to(device).train()


@dataclass
class Sides:
    """Both sides of the comparison, each case restoring the same starting point.

    Attributes:
        cases: The mutual iteration first, then one plain pass per configuration.
        twins: The stock twin of each configuration.
        mutual: Per round, the mutual step's passes.
        plain: Per configuration, per round, its plain pass.
    """

    cases: List[Case]
    twins: List[nn.Module] = field(default_factory=list)
    mutual: List[List[PassRecord]] = field(default_factory=list)
    plain: List[List[PassRecord]] = field(default_factory=list)


def build_sides(step: MutualTrainStep, model: nn.Module, optim_wrapper: OptimWrapper,
                cfg: Config, data: dict, iteration: int, device: str
                ) -> Tuple[Sides, List[SubnetConfig], List[PassBatch]]:
    """The like-for-like cases; returns them, the cohort and each pass's batch.

    One mutual iteration runs first (its optimizer state then exists, as in training);
    the weights after it are the starting point of every round of both sides, and a
    second iteration from them records each pass's batch and random state.
    """
    cohort = step.sampler.cohort(iteration)
    step(model, copy.deepcopy(data), optim_wrapper, iteration)
    weights = copy.deepcopy(model.state_dict())
    start_rng = torch.get_rng_state()
    batches = capture_batches(step, model, optim_wrapper, data, iteration)
    model.load_state_dict(weights)
    counter = PassCounter(model)
    sides = Sides([])
    holder: List[dict] = []

    def mutual_setup() -> None:
        model.load_state_dict(weights)
        holder[:] = [copy.deepcopy(data)]
        torch.set_rng_state(start_rng)

    def mutual_run() -> None:
        log_vars = step(model, holder[0], optim_wrapper, iteration)
        names = pass_names(len(cohort))
        sides.mutual.append([PassRecord(log_vars[name].item(), counts)
                             for name, counts in zip(names, counter.take())])

    sides.cases.append(Case('mutual', mutual_run, mutual_setup))
    for config, batch in zip(cohort, batches):
        twin = build_twin(model, cfg, config, device)
        sides.twins.append(twin)
        sides.cases.append(_plain_case(config.name, twin, optim_wrapper_of(cfg, twin), batch,
                                       sides.plain))
    full = step.sampler.full
    set_width(model, full.width, full.head_width)
    return sides, cohort, batches


def _plain_case(name: str, twin: nn.Module, optim_wrapper: OptimWrapper, batch: PassBatch,
                records: List[List[PassRecord]]) -> Case:
    """The plain pass of one configuration: from the same weights, random state and batch
    every round."""
    weights = copy.deepcopy(twin.state_dict())
    counter = PassCounter(twin)
    rounds: List[PassRecord] = []
    records.append(rounds)
    holder: List[tuple] = []

    def setup() -> None:
        twin.load_state_dict(weights)
        samples = copy.deepcopy(batch.samples)
        holder[:] = [(batch.loaded(samples), batch.inputs, samples)]
        torch.set_rng_state(batch.rng_state)

    def run() -> None:
        loss = plain_pass(twin, optim_wrapper, *holder[0])
        rounds.append(PassRecord(loss.item(), counter.take()[0]))

    return Case(f'plain {name}', run, setup)


def evidence(cohort: Sequence[SubnetConfig], batches: Sequence[PassBatch],
             sides: Sides) -> Tuple[List[dict], float, bool]:
    """Per configuration, the first timed round's losses and counts of both sides.

    Returns:
        The table rows, the largest relative loss difference over every round and
        configuration, and whether the RoI counts agreed in every round.
    """
    rows, largest, counts_agree = [], 0.0, True
    for index, (config, batch) in enumerate(zip(cohort, batches)):
        pairs = [(rounds[index], plain)
                 for rounds, plain in zip(sides.mutual, sides.plain[index])]
        for mutual, plain in pairs:
            largest = max(largest, abs(mutual.loss - plain.loss) / abs(mutual.loss))
            counts_agree &= mutual.counts == plain.counts
        mutual, plain = pairs[0]
        row = dict(config=config.name, input='x'.join(map(str, batch.inputs.shape[-2:])),
                   loss_mutual=f'{mutual.loss:.6f}', loss_plain=f'{plain.loss:.6f}')
        for key, _ in COUNTED_HEADS:
            row[key] = f'{mutual.counts[key]} / {plain.counts[key]}'
        rows.append(row)
    return rows, largest, counts_agree


# ------------------------------------------------------------------------ profile
#: Where an iteration spends its time: (label, file name ending, function name).
PROFILE_PARTS = (
    ('data preprocessor', 'data_preprocessors/data_preprocessor.py', 'forward'),
    ('set_width', 'mutualnet_mm/ops/slimmable.py', 'set_width'),
    ('DetBatchRescaler', 'mutualnet_mm/engine/rescale.py', '__call__'),
    ('model forward, loss mode', 'mmdet/models/detectors/base.py', 'forward'),
    ('backward', 'optimizer/optimizer_wrapper.py', 'backward'),
    ('optimizer step', 'optimizer/optimizer_wrapper.py', 'step'),
    ('zero_grad', 'optimizer/optimizer_wrapper.py', 'zero_grad'),
)


def profile(cases: Sequence[Case], count: int) -> None:
    """cProfile ``count`` rounds of the mutual case and of the plain ones; print both."""
    profilers = {'mutual': cProfile.Profile(), 'plain': cProfile.Profile()}
    for round_index in range(count + 1):  # the first round warms up
        for case in cases:
            case.setup()
            profiler = profilers[case.name.split()[0]]
            if round_index:
                profiler.enable()
            case.run()
            profiler.disable()
    stats = {side: pstats.Stats(profiler, stream=io.StringIO())
             for side, profiler in profilers.items()}
    totals = {side: stat.total_tt for side, stat in stats.items()}
    rows = []
    for label, path, function in PROFILE_PARTS:
        row = dict(part=label)
        for side, stat in stats.items():
            seconds = _cumulative(stat, path, function)
            row[f'{side}_ms'] = seconds / count * 1000
            row[f'{side}_share'] = f'{seconds / totals[side] * 100:.1f}%'
        rows.append(row)
    rows.append(dict(part='total', **{f'{side}_ms': total / count * 1000
                                      for side, total in totals.items()}))
    print(f'where an iteration spends its time (cProfile, {count} rounds after one warm-up; '
          'cumulative times, profiler overhead included; plain: the sum of its passes):')
    print(markdown_table(rows))
    for side, stat in stats.items():
        out = io.StringIO()
        stat.stream = out
        stat.sort_stats('tottime').print_stats(25)
        print(f'\n{side}: the functions taking the most time of their own')
        print(without_install_dirs(out.getvalue()))


def _cumulative(stats: pstats.Stats, path: str, function: str) -> float:
    """Cumulative seconds of the matching functions (only calls not made by one another)."""
    keys = [key for key in stats.stats if key[0].endswith(path) and key[2] == function]
    seconds = 0.0
    for key in keys:
        _, _, _, cumulative, callers = stats.stats[key]
        seconds += cumulative - sum(callers[c][3] for c in callers if c in keys)
    return seconds


# --------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Training overhead: mutual iteration vs. its plain passes, like for like',
                 args)
    print_device(args.device)
    root = generated_data((args.height or args.size, args.size), num_train=args.batch_size,
                          root=args.data_root)
    cfg = config_on_generated_data(args.config, root, args.size, args.batch_size)
    model, optim_wrapper, step = build_mutual_side(cfg, device=args.device)
    print(describe(model) + '\n', flush=True)
    sides, cohort, batches = build_sides(step, model, optim_wrapper, cfg, first_batch(cfg),
                                         args.iteration, args.device)
    if args.profile:
        profile(sides.cases, args.profile)
        print_footer(started)
        return

    times = time_interleaved(sides.cases, args.repeats, args.warmup,
                             device_clock(args.device), block=len(sides.cases))
    del sides.mutual[:args.warmup]
    for rounds in sides.plain:
        del rounds[:args.warmup]
    rows, largest, counts_agree = evidence(cohort, batches, sides)
    print(f'cohort of iteration {args.iteration}: each configuration\'s pass in the mutual '
          'step and its plain pass (loss; RoIs through the box head / the mask head, '
          'mutual / plain), first timed round:')
    print(markdown_table(rows))
    print(f'same work: over {args.repeats} rounds, largest relative loss difference '
          f'{largest:.1e}; RoI counts ' + ('equal in every round' if counts_agree
                                           else 'DIFFER in some round'))
    plain_sum = [sum(values) for values in zip(*(times[c.name] for c in sides.cases[1:]))]
    table = [dict(side=name, median_s=median(values), quartiles=spread(values))
             for name, values in times.items()]
    table.append(dict(side='sum of plain', median_s=median(plain_sum),
                      quartiles=spread(plain_sum)))
    print(f'\nseconds per iteration ({args.repeats} interleaved rounds, {args.warmup} '
          'warm-up):')
    print(markdown_table(table))
    ratios = [m / p for m, p in zip(times['mutual'], plain_sum)]
    print(f'\nmutual / sum of plain: {paired_ratio(times["mutual"], plain_sum):.3f} (median '
          f'of per-round ratios, quartiles {spread(ratios)}; ratio of medians '
          f'{median(times["mutual"]) / median(plain_sum):.3f})'
          + target_note([paired_ratio(times['mutual'], plain_sum)], args.target))
    print_footer(started)


if __name__ == '__main__':
    main()
