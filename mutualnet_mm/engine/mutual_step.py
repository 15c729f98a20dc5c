"""The mutual-learning training step: a cohort of configurations, one optimizer step.

Shared by every task: what differs (how a batch is rescaled, what distillation
compares) is passed in as a rescaler and a distiller.
"""
from collections import OrderedDict
from contextlib import ExitStack, nullcontext
from typing import Any, Dict, List, Optional

import torch
from mmengine.optim import OptimWrapper
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.wrappers import unwrap
from ..ops import depth_range_of, is_backbone, set_width, slimmable_modules, width_range_of
from ..tasks import find_task, task_of
from .distill import Distiller, build_distiller
from .rescale import build_rescaler
from .subnet import CohortSampler


def _detach(output: Any) -> Any:
    if isinstance(output, Tensor):
        return output.detach()
    if isinstance(output, (list, tuple)):
        return type(output)(_detach(item) for item in output)
    return output


def pass_names(num_passes: int) -> List[str]:
    """The log names of a cohort's passes, largest first: ``loss_full``, then
    ``loss_mid1``, ``loss_mid2``... (random widths, widest first), then ``loss_min``.

    The logged ``loss`` is their sum: what the backward passes accumulate.
    """
    if num_passes == 1:
        return ['loss_full']
    return ['loss_full', *(f'loss_mid{i}' for i in range(1, num_passes - 1)), 'loss_min']


class NonFiniteLossError(FloatingPointError):
    """A configuration produced a NaN or infinite loss."""


def full_only_iterations(mutual: dict, max_iters: Optional[int]) -> int:
    """The warm-up of a ``mutual`` config in iterations (see :meth:`MutualTrainStep.from_config`).

    Raises:
        ValueError: both keys are set, the fraction is not in [0, 1) or has no schedule
            length to apply to, or the warm-up covers the whole schedule (the cohort,
            every narrower width, would never train).
    """
    fraction = mutual.get('full_only_fraction')
    if fraction is not None and mutual.get('full_only_iters') is not None:
        raise ValueError('set mutual.full_only_fraction or mutual.full_only_iters, not both '
                         f"(got {fraction!r} and {mutual['full_only_iters']!r})")
    if fraction is None:
        iterations = mutual.get('full_only_iters') or 0
    elif isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or \
            not 0 <= fraction < 1:
        raise ValueError(f'mutual.full_only_fraction must be a number in [0, 1), got '
                         f'{fraction!r}')
    elif max_iters is None:
        if fraction:
            raise ValueError('mutual.full_only_fraction needs the schedule length (max_iters)')
        iterations = 0
    else:
        iterations = round(fraction * max_iters)
    if max_iters is not None and isinstance(iterations, int) and iterations >= max_iters > 0:
        raise ValueError(f'the full configuration alone for the first {iterations} iterations '
                         f'covers the whole schedule of {max_iters}: the cohort (every narrower '
                         'width) would never train. Use mutual.full_only_fraction (e.g. 0.5) '
                         'to keep the warm-up in proportion to the schedule')
    return iterations


class MutualTrainStep:
    """Runs one iteration of mutual learning.

    The data preprocessor runs once; then for each configuration of the cohort (full
    first): set the width, rescale the batch, forward in loss mode, backward (under DDP
    all passes but the last run in ``no_sync``, so the last backward synchronizes the
    accumulated sum); then exactly one optimizer step.

    Args:
        sampler: Draws each iteration's cohort.
        rescaler: Resizes a preprocessed batch (and its annotations) to a scale.
        distiller: Optional in-place distillation from the full configuration.
        skip_nonfinite: Skip a configuration whose loss is not finite (logged as
            ``skipped``) instead of stopping with an error naming it.
    """

    def __init__(self, sampler: CohortSampler, rescaler, distiller: Optional[Distiller] = None,
                 skip_nonfinite: bool = False) -> None:
        self.sampler = sampler
        self.rescaler = rescaler
        self.distiller = distiller
        self.skip_nonfinite = skip_nonfinite

    @classmethod
    def from_config(cls, cfg: Optional[dict], model: nn.Module, seed: int = 0,
                    max_iters: Optional[int] = None) -> 'MutualTrainStep':
        """Build from a config's ``mutual`` section.

        Keys: ``num_subnets`` (4), ``scales`` ((1.0,)), ``frames`` (None),
        ``width_range`` and ``depth_range`` (default: the model's), ``head_width_range``
        and ``full_head_passes`` (see :class:`CohortSampler`), ``rescaler`` and
        ``distill`` (default: the model's task's; ``distill=None``: none),
        ``skip_nonfinite`` (False), and the warm-up in which the full configuration
        trains alone: ``full_only_fraction`` (of the ``max_iters`` schedule, in [0, 1))
        or ``full_only_iters`` (0 if neither is set; see :func:`full_only_iterations`).
        """
        cfg = dict(cfg or {})
        allowed = {'num_subnets', 'scales', 'frames', 'width_range', 'head_width_range',
                   'depth_range', 'full_head_passes', 'rescaler', 'distill', 'skip_nonfinite',
                   'full_only_iters', 'full_only_fraction'}
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise KeyError(f'unknown key(s) {unknown} in mutual config; allowed: '
                           f'{sorted(allowed)}')
        module = unwrap(model)
        model_range = width_range_of(module)
        width_range = tuple(cfg.get('width_range') or model_range)
        head_width_range = cfg.get('head_width_range')
        for key, value in (('width_range', width_range), ('head_width_range', head_width_range)):
            if value is not None and (value[0] < model_range[0] or value[1] > model_range[1]):
                raise ValueError(f'mutual.{key} {tuple(value)} is outside the range '
                                 f'{model_range} the model allows')
        if head_width_range is not None and not any(
                name and not is_backbone(name) for name, _ in slimmable_modules(module)):
            raise ValueError(f'mutual.head_width_range needs slimmable parts after the '
                             f'backbone; {type(module).__name__} slims its backbone only')
        model_depths = depth_range_of(module)
        depth_range = cfg.get('depth_range') or model_depths
        if cfg.get('depth_range') is not None and (
                model_depths is None or depth_range[0] < model_depths[0]
                or depth_range[1] > model_depths[1]):
            raise ValueError(f'mutual.depth_range {tuple(depth_range)} is outside the '
                             f'depths {model_depths} the model allows (None: no depth)')
        sampler = CohortSampler(width_range, cfg.get('num_subnets', 4),
                                cfg.get('scales', (1.0,)), cfg.get('frames'), seed,
                                full_only_iterations(cfg, max_iters),
                                None if head_width_range is None else tuple(head_width_range),
                                cfg.get('full_head_passes', 0),
                                None if depth_range is None else tuple(depth_range))
        # The config's rescaler and distiller, else the ones the model's task declares.
        task = find_task(module)  # None: a model of no registered task
        rescaler_cfg = cfg.get('rescaler') or dict(type=task_of(module).rescaler)
        distill_cfg = cfg['distill'] if 'distill' in cfg else task and task.distiller
        return cls(sampler, build_rescaler(rescaler_cfg), build_distiller(distill_cfg),
                   cfg.get('skip_nonfinite', False))

    def __call__(self, model: nn.Module, data: Dict[str, Any], optim_wrapper: OptimWrapper,
                 iteration: int) -> Dict[str, Tensor]:
        """Run the cohort of ``iteration`` on ``data``; return the log variables.

        They are the full configuration's stock loss terms (which sum to
        ``loss_full``), each pass's loss (:func:`pass_names`), ``loss``: the sum over
        the passes, ``loss_distill``: the mean distillation term (already part of the
        narrower passes' losses) and ``skipped``: passes with a non-finite loss.
        """
        module = unwrap(model)
        cohort = self.sampler.cohort(iteration)
        with optim_wrapper.optim_context(model):
            batch = module.data_preprocessor(data, True)
        log_vars: Dict[str, Tensor] = OrderedDict()
        pass_losses: List[Tensor] = []
        distill_losses: List[Tensor] = []
        skipped = 0
        teacher = None
        count_before = optim_wrapper.inner_count
        try:
            for index, config in enumerate(cohort):
                is_last = index == len(cohort) - 1
                # Sub-networks that learn from the full configuration only: no label loss.
                labels = index == 0 or self.distiller is None or self.distiller.label_loss
                set_width(module, config.width, config.head_width, config.depth)
                inputs, samples = self.rescaler(batch['inputs'], batch['data_samples'], config)
                with ExitStack() as stack:
                    if not is_last and hasattr(model, 'no_sync'):
                        stack.enter_context(model.no_sync())
                    captured = stack.enter_context(
                        self.distiller.capture(module) if self.distiller else nullcontext([]))
                    if not labels:
                        stack.enter_context(self.distiller.without_label_loss(module))
                    with optim_wrapper.optim_context(model):
                        losses = model(inputs, samples, mode='loss')
                        if labels:
                            loss, pass_vars = module.parse_losses(losses)
                        if self.distiller is not None and index > 0:
                            distill = self.distiller.loss(captured[-1], teacher)
                            loss = loss + distill if labels else distill
                            distill_losses.append(distill.detach())
                    if self.distiller is not None and index == 0:
                        teacher = _detach(captured[-1])
                    if not torch.isfinite(loss).all():
                        if not self.skip_nonfinite:
                            raise NonFiniteLossError(
                                f'non-finite loss {loss.item()} at configuration '
                                f'{config.name} (width={config.width:.4f}, '
                                f'scale={config.scale}) in iteration {iteration}; set '
                                'mutual.skip_nonfinite=True to skip such passes')
                        skipped += 1
                        # A zero that reaches every parameter keeps DDP's gradient hooks in
                        # step on every rank; backpropagating through the non-finite graph
                        # instead would turn the accumulated gradients into NaN (0 * inf).
                        loss = sum(p.sum() * 0.0 for p in model.parameters()
                                   if p.requires_grad)
                    optim_wrapper.backward(loss)
                if index == 0:
                    log_vars.update(pass_vars)  # the stock loss names, full configuration
                pass_losses.append(loss.detach())
        finally:
            full = self.sampler.full
            set_width(module, full.width, full.head_width, full.depth)
        # mmengine counts backward calls for gradient accumulation: one per iteration.
        optim_wrapper._inner_count = count_before + 1
        if optim_wrapper.should_update():
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        log_vars.update(zip(pass_names(len(pass_losses)), pass_losses))
        if distill_losses:  # a part of the narrower passes' losses, not added to them
            log_vars['loss_distill'] = torch.stack(distill_losses).mean()
        if skipped:
            log_vars['skipped'] = pass_losses[0].new_tensor(float(skipped))
        log_vars['loss'] = torch.stack(pass_losses).sum()
        return log_vars


def check_trainable_norms(model: nn.Module) -> None:
    """Refuse batch norms that stay in eval mode during mutual training.

    Running statistics are not shared across widths and scales: ``norm_eval=True`` or
    frozen stages (which keep their norms in eval mode) would normalize every
    configuration with one set of full-width statistics.
    """
    for name, part in slimmable_modules(model):
        was_training = part.training
        part.train()  # applies norm_eval and frozen stages as training would
        frozen = [n for n, m in part.named_modules()
                  if isinstance(m, _BatchNorm) and not m.training]
        part.train(was_training)
        if frozen:
            owner = name or type(part).__name__
            raise ValueError(f'{owner} keeps {len(frozen)} batch norm(s) in eval mode during '
                             f'training (e.g. {frozen[0]!r}): batch-norm statistics differ '
                             'per width and scale, so they cannot be frozen. Set '
                             'norm_eval=False and frozen_stages=-1 in its config')


__all__ = ['MutualTrainStep', 'NonFiniteLossError', 'check_trainable_norms', 'pass_names']
