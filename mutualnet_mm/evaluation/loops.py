"""Per-configuration evaluation loops: calibrate, run the evaluator, count the cost.

``PerConfigValLoop`` and ``PerConfigTestLoop`` evaluate every (width, scale) of a grid
with the stock evaluator; hooks on their events write the result set (:mod:`.hooks`).
"""
import time
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel
from mmengine.registry import LOOPS
from mmengine.runner import TestLoop, ValLoop
from mmengine.runner.amp import autocast
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from ..checks import check_int
from ..engine.calibration import build_calibration_loader, calibrate_bn
from ..engine.eta import preserved_random_states
from ..engine.loops import register_eta_hook
from ..engine.rescale import build_rescaler, default_rescaler, with_loaded_annotations
from ..engine.subnet import SubnetConfig, check_scales
from ..models.wrappers import unwrap
from ..ops import depth_range_of, discard_kept_slices, set_width, width_range_of
from ..reliability.fingerprint import weights_fingerprint
from ..tasks import Task, task_of
from .cost import count_cost
from .hooks import register_per_config_hooks
from .latency import check_latency_options, measure_latency


def prints_summary(metrics: Sequence, task: Task) -> bool:
    """Whether one of an evaluator's ``metrics`` logs a summary (the task's
    ``summary_metrics``)."""
    return any(cls.__name__ in task.summary_metrics for metric in metrics
               for cls in type(metric).__mro__)


def _size(config: SubnetConfig) -> Tuple[float, float, float, float]:
    """Orders configurations: by width, then head width, then depth, then scale."""
    head = config.width if config.head_width is None else config.head_width
    return config.width, head, 1.0 if config.depth is None else config.depth, config.scale


class _PerConfigMixin:
    """Evaluate every configuration of a grid with the stock evaluator.

    For each (width, scale): set the width, calibrate batch norms on training batches,
    run the dataloader with the batch rescaled to the scale, evaluate, and count the cost
    (and latency) on the first sample. The full configuration runs last, so the model is
    left at full width with its statistics.

    Besides the stock hook points, every rank calls ``before_{stage}_config``,
    ``after_{stage}_calibration_iter``, ``after_{stage}_config`` and
    ``after_{stage}_grid`` (their arguments are those of the calls below; ``position``
    counts from 1). The loops register :class:`~.hooks.PerConfigResultsHook` (the result
    set, the visualizer) and :class:`~.hooks.PerConfigOutputsHook`.
    """

    def _setup_grid(self, widths: Optional[Sequence[float]], scales: Sequence[float],
                    calibration: Optional[dict], rescaler: Optional[dict],
                    metric: Optional[str], count_flops: bool,
                    latency: Optional[dict] = None,
                    head_widths: Optional[Sequence[float]] = None,
                    depths: Optional[Sequence[float]] = None) -> None:
        model = self.runner.model
        module = unwrap(model)
        low, high = width_range_of(module)
        widths = tuple(widths) if widths else (high, low)
        heads = self._optional_axis(head_widths, 'head_widths')
        model_depths = depth_range_of(module)
        if depths is None and model_depths is not None:
            depths = (model_depths[1], model_depths[0])
        levels = self._optional_axis(depths, 'depths')
        for width in widths:
            for head in heads:
                for depth in levels:  # validates against the model's ranges
                    set_width(module, width, head, depth)
        set_width(module, high, None, None if model_depths is None else model_depths[1])
        scales = check_scales(scales, type(self).__name__)
        grid = [SubnetConfig(float(w), s, None, h, d) for w in widths for h in heads
                for d in levels for s in scales]
        # Largest first, the full configuration last (the model is left with its statistics).
        ordered = sorted(grid, key=_size, reverse=True)
        self.grid = ordered[1:] + ordered[:1]
        calibration = dict(calibration or {})
        unknown = set(calibration) - {'num_batches'}
        if unknown:
            raise KeyError(f'unknown calibration key(s) {sorted(unknown)}; allowed: '
                           "['num_batches']")
        self.num_calibration_batches = check_int(
            calibration.get('num_batches', 8), f'{type(self).__name__}.calibration.num_batches',
            0)
        self.calibration_loader: Optional[DataLoader] = None
        self.rescaler = build_rescaler(rescaler or default_rescaler(model))
        self.metric = metric
        self.count_flops = count_flops
        self.latency = None if latency is None else dict(latency)
        if self.latency is not None:  # checked now, not after a training epoch
            check_latency_options(self.latency, f'{type(self).__name__}.latency')

    def _optional_axis(self, values: Optional[Sequence[float]],
                       key: str) -> Tuple[Optional[float], ...]:
        """A grid axis of its own (head widths, depths), or ``(None,)`` without one."""
        if values is None:
            return (None,)
        if isinstance(values, (int, float)) or not values:
            raise ValueError(f'{type(self).__name__}.{key} must be a non-empty list of '
                             f'numbers or None, got {values!r}')
        return tuple(float(v) for v in values)

    def _build_calibration_loader(self) -> None:
        """Set ``calibration_loader``: a seeded loader over the training set
        (:func:`build_calibration_loader`), once, if needed.

        Not the training loop's own: iterating that would reset its persistent workers'
        shared iterator mid-epoch and change the training order.
        """
        if self.calibration_loader is not None or not self.num_calibration_batches:
            return
        loader_cfg = self.runner.cfg.get('train_dataloader')
        if not loader_cfg:
            raise ValueError('BN calibration needs train_dataloader in the config '
                             '(or calibration=dict(num_batches=0) to skip it)')
        self.calibration_loader = build_calibration_loader(loader_cfg,
                                                           task=task_of(self.runner.model))

    def _evaluate_grid(self, stage: str) -> dict:
        runner = self.runner
        model = runner.model
        module = unwrap(model)
        # With test-time augmentation (tools/test.py --tta) the model wraps the detector.
        detector = module.module if isinstance(module, BaseTTAModel) else module
        records: List[dict] = []
        fingerprint = weights_fingerprint(module)
        progress = ProgressBar(len(self.grid) * len(self.dataloader)) \
            if is_main_process() else None
        self._grid_clock = (time.perf_counter(), 0)  # start, batches evaluated
        summary = prints_summary(self.evaluator.metrics, task_of(module))
        for position, config in enumerate(self.grid, 1):
            if is_main_process():
                print_log(f'configuration {position}/{len(self.grid)}: {config.name}: '
                          'BN calibration on '
                          f'{self.num_calibration_batches} batches, then {stage} on '
                          f'{len(self.dataloader)} batches', logger='current')
            runner.call_hook(f'before_{stage}_config', position=position, config=config)
            calibrate_bn(detector, self.calibration_loader or (), config, self.rescaler,
                         self.num_calibration_batches,
                         after_batch=partial(runner.call_hook, f'after_{stage}_calibration_iter',
                                             position=position, config=config))
            first_batch = None
            for idx, data_batch in enumerate(self.dataloader):
                first_batch = first_batch or data_batch
                runner.call_hook(f'before_{stage}_iter', batch_idx=idx, data_batch=data_batch)
                outputs = self._predict(module, data_batch, config)
                self._grid_clock = (self._grid_clock[0], self._grid_clock[1] + 1)
                self.evaluator.process(data_samples=outputs, data_batch=data_batch)
                runner.call_hook(f'after_{stage}_iter', batch_idx=idx,
                                 data_batch=data_batch, outputs=outputs)
                if progress:
                    progress.update()
            if is_main_process():
                print_log(f'evaluating {config.name} ({position}/{len(self.grid)})'
                          + ("; the evaluator's summary follows" if summary else ''),
                          logger='current')
            metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
            self._check_metric(metrics)
            record = config.record()
            if first_batch is not None:
                record.update(self._measure(detector, first_batch, config,
                                            tta=detector is not module))
            record.update(metrics)
            records.append(record)
            runner.call_hook(f'after_{stage}_config', position=position, config=config,
                             record=record)
        # Reported largest first (the full configuration on top), in every output.
        records.sort(key=lambda r: _size(SubnetConfig.from_record(r)), reverse=True)
        full_metrics = dict(records[0])
        metric = self.metric or self._default_metric(full_metrics)
        if is_main_process():
            print()
        runner.call_hook(f'after_{stage}_grid', records=records, metric=metric,
                         fingerprint=fingerprint)
        return {k: v for k, v in full_metrics.items() if '/' in k}

    def _measure(self, detector, data_batch, config: SubnetConfig, tta: bool) -> dict:
        """Cost (and latency) of ``detector`` on the first sample of ``data_batch``.

        With test-time augmentation the batch holds views: the cost counts all of them
        (one forward each), and latency is not measured.
        """
        views = len(data_batch['inputs']) if tta else 1
        if tta:
            data_batch = {key: value[0] for key, value in data_batch.items()}
        record = self._cost(detector, data_batch, config, views) if self.count_flops else {}
        if self.latency is not None and not tta:
            record['latency_ms'] = self._latency(detector, data_batch, config)
        return record

    def estimate_seconds(self) -> float:
        """Seconds a run of the grid should take, measured on one batch.

        Times a loader start, a batch fetch and ``predict`` at the grid's largest and
        smallest configurations; each configuration's batches cost a fetch and a forward
        interpolated linearly in :meth:`SubnetConfig.relative_cost`, plus loader starts.
        Weights, statistics and random generators are left as they were; the model is
        left at full width in eval mode.
        """
        module = unwrap(self.runner.model)
        module.eval()
        ordered = sorted(self.grid, key=_size)
        full, smallest = ordered[-1], ordered[0]
        seconds = {}
        loader = self.dataloader
        # A loader of its own: a first iterator of a loader with persistent workers would
        # stay, and the evaluation's would then not draw its workers' seed.
        trial_loader = DataLoader(loader.dataset, batch_size=loader.batch_size,
                                  num_workers=loader.num_workers, collate_fn=loader.collate_fn)
        with preserved_random_states():
            clock = time.perf_counter()
            batches = iter(trial_loader)
            batch = next(batches)
            first = time.perf_counter() - clock
            clock = time.perf_counter()
            next(batches, None)
            fetch = time.perf_counter() - clock
            del batches
            cuda = next(module.parameters()).is_cuda
            for config in (full, smallest):
                set_width(module, config.width, config.head_width, config.depth)
                seconds[config] = measure_latency(
                    partial(self._predict, module, batch, config), repeats=1, warmup=1,
                    cuda=cuda) / 1000.0
        set_width(module, full.width, full.head_width, full.depth)
        base = smallest.relative_cost(full)
        per_cost = (seconds[full] - seconds[smallest]) / (1.0 - base) if base < 1.0 else 0.0
        start = max(0.0, first - fetch)
        persistent = getattr(loader, 'persistent_workers', False)
        starts = (1 if persistent else len(self.grid)) + \
            (len(self.grid) if self.num_calibration_batches else 0)
        batches_per_config = self.num_calibration_batches + len(loader)
        return starts * start + sum(batches_per_config * (
            fetch + seconds[smallest] + per_cost * (c.relative_cost(full) - base))
            for c in self.grid)

    def grid_eta(self) -> Optional[float]:
        """Seconds left in the grid: elapsed time (calibrations included) per evaluated
        batch, times the batches left (None before the first batch)."""
        start, done = getattr(self, '_grid_clock', (0.0, 0))
        if not done:
            return None
        total = len(self.grid) * len(self.dataloader)
        return (time.perf_counter() - start) / done * (total - done)

    @torch.no_grad()
    def _predict(self, module, data_batch, config: SubnetConfig):
        if isinstance(module, BaseTTAModel):  # each augmented view at the configuration
            views = [{key: value[i] for key, value in data_batch.items()}
                     for i in range(len(data_batch['inputs']))]
            predictions = [self._predict(module.module, view, config) for view in views]
            return module.merge_preds(list(zip(*predictions)))
        with autocast(enabled=getattr(self, 'fp16', False)):
            data = module.data_preprocessor(data_batch, False)
            inputs, samples = self.rescaler(data['inputs'], data['data_samples'], config)
            return with_loaded_annotations(module(inputs, samples, mode='predict'),
                                           data['data_samples'])

    def _first_sample(self, module, data_batch, config: SubnetConfig) -> tuple:
        """The first sample of a batch, preprocessed and rescaled to ``config``."""
        single = {key: value[:1] for key, value in data_batch.items()}
        data = module.data_preprocessor(single, False)
        return self.rescaler(data['inputs'], data['data_samples'], config)

    @torch.no_grad()
    def _latency(self, module, data_batch, config: SubnetConfig) -> float:
        """Median milliseconds of ``predict`` on the first sample (batch 1)."""
        inputs, samples = self._first_sample(module, data_batch, config)

        def run():
            with autocast(enabled=getattr(self, 'fp16', False)):
                return module(inputs, samples, mode='predict')

        return measure_latency(run, **self.latency, cuda=inputs.is_cuda)

    def _cost(self, module, data_batch, config: SubnetConfig, views: int = 1) -> dict:
        """Cost of ``predict`` on the first sample; with test-time augmentation, of all
        ``views`` of it."""
        inputs, samples = self._first_sample(module, data_batch, config)
        parts = count_cost(module, lambda: module(inputs, samples, mode='predict'))
        total = parts.pop('total')
        record = {'input_shape': list(inputs.shape[1:]), 'gflops': total['gmacs'] * views,
                  'mparams': total['mparams']}
        record.update({f'gflops_{part}': cost['gmacs'] * views for part, cost in parts.items()})
        return record

    def _check_metric(self, metrics: Dict[str, float]) -> None:
        """Fail at the first configuration whose metrics lack the configured ``metric``
        (one with no metrics at all, a detector that predicts nothing yet, proves
        nothing)."""
        if self.metric is not None and metrics and self.metric not in metrics:
            raise ValueError(f'{type(self).__name__}: metric={self.metric!r} is not reported '
                           f'by the evaluator; it reports {sorted(metrics)}. Nothing was '
                           'written')

    def _default_metric(self, metrics: Dict[str, float]) -> Optional[str]:
        """The first of the task's metrics the evaluator reports, else its first metric."""
        for key in task_of(self.runner.model).metrics:
            if key in metrics:
                return key
        numeric = [k for k, v in metrics.items() if isinstance(v, float) and '/' in k]
        return numeric[0] if numeric else None


class _PerConfigLoop(_PerConfigMixin):
    """Shared constructor and ``run`` of the per-configuration val and test loops."""

    stage: str

    def __init__(self, runner, dataloader, evaluator, widths: Optional[Sequence[float]] = None,
                 scales: Sequence[float] = (1.0,), calibration: Optional[dict] = None,
                 rescaler: Optional[dict] = None, metric: Optional[str] = None,
                 count_flops: bool = True, fp16: bool = False,
                 latency: Optional[dict] = None,
                 head_widths: Optional[Sequence[float]] = None,
                 depths: Optional[Sequence[float]] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self._setup_grid(widths, scales, calibration, rescaler, metric, count_flops, latency,
                         head_widths, depths)
        register_eta_hook(runner)
        register_per_config_hooks(runner)

    def run(self) -> dict:
        self._build_calibration_loader()  # before the hooks, which may set up its workers
        self.runner.call_hook(f'before_{self.stage}')
        self.runner.call_hook(f'before_{self.stage}_epoch')
        # EMAHook swaps the averaged weights in (and back out after) through .data, which
        # kept slices cannot see: the grid starts, and training resumes, without any
        discard_kept_slices(self.runner.model)
        metrics = self._evaluate_grid(self.stage)
        self.runner.call_hook(f'after_{self.stage}_epoch', metrics=metrics)
        discard_kept_slices(self.runner.model)
        self.runner.call_hook(f'after_{self.stage}')
        return metrics


@LOOPS.register_module()
class PerConfigValLoop(_PerConfigLoop, ValLoop):
    """Validation over a grid of (width, scale) configurations.

    Args:
        widths: Widths to evaluate (default: the model's min and max).
        scales: Input scales to evaluate.
        calibration: ``dict(num_batches=K)``: training batches for BN calibration
            (0 keeps the statistics as they are).
        rescaler: The batch rescaler (default: the task's).
        metric: Metric for the query table (default: bbox mAP or top-1); one the
            evaluator reports, checked when the first configuration is evaluated.
        count_flops: Count multiply-adds and parameters per configuration.
        fp16: Evaluate under autocast.
        latency: ``dict(repeats=20, warmup=5)``: also measure ``latency_ms``, the median
            of repeated ``predict`` runs on the first sample (batch 1) per configuration,
            and write ``query_table_latency_ms.json`` (None: no measurement).
        head_widths: Widths of the parts after the backbone (neck, heads), a dimension
            of the grid of their own (decoupled widths: every width with every head
            width); ``None``: they follow the backbone's width.
        depths: Depths of the depth-elastic parts, a dimension of the grid (default:
            the model's largest and smallest where it has a depth; ``None`` otherwise).
    """

    stage = 'val'


@LOOPS.register_module()
class PerConfigTestLoop(_PerConfigLoop, TestLoop):
    """Test over a grid of (width, scale) configurations (see :class:`PerConfigValLoop`)."""

    stage = 'test'


__all__ = ['PerConfigTestLoop', 'PerConfigValLoop', 'prints_summary']
