"""Hooks on the per-configuration loops' events: the result set, the visualizer, outputs.

The loops (:mod:`.loops`) call, besides the stock hook points,
``before_{stage}_config(runner, position, config)`` before each configuration,
``after_{stage}_config(runner, position, config, record)`` after it, and
``after_{stage}_grid(runner, records, metric, fingerprint)`` when every configuration is
evaluated (``stage`` is ``val`` or ``test``). The hooks here are what the loops register
for themselves; a user hook can take the same events.
"""
import logging
import os.path as osp
from typing import Dict, List, Optional

import mmcv
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..engine.subnet import SubnetConfig
from .results import format_table, write_results


def _training_iteration(runner) -> int:
    """The runner's training iteration, 0 when its train loop is not built.

    Reading ``runner.iter`` builds the train loop (its dataloader and dataset too); a
    test run has nothing to train, so this does not, as mmengine's logger does not.
    """
    loop = runner._train_loop
    return 0 if loop is None or isinstance(loop, dict) else runner.iter


@HOOKS.register_module()
class PerConfigResultsHook(Hook):
    """Writes the result set of a grid, logs its table and feeds the visualizer.

    On ``after_{val,test}_grid`` (main process): ``per_config.{json,csv,png}`` and the
    query tables in the work dir (:func:`~.results.write_results`, with the weights'
    fingerprint), the table in the log, and every configuration's numbers (keyed
    ``per_config/<config>/<key>``) and the plot to the runner's visualizer backends
    (TensorBoard, W&B, local ``vis_data``).
    """

    priority = 'LOW'

    def after_val_grid(self, runner, records: List[dict], metric: Optional[str],
                       fingerprint: str) -> None:
        self._report(runner, records, metric, fingerprint)

    def after_test_grid(self, runner, records: List[dict], metric: Optional[str],
                        fingerprint: str) -> None:
        self._report(runner, records, metric, fingerprint)

    @staticmethod
    def _report(runner, records: List[dict], metric: Optional[str], fingerprint: str) -> None:
        if not is_main_process():
            return
        work_dir = runner.work_dir
        latency = ('latency_ms',) if any('latency_ms' in r for r in records) else ()
        if metric is None:
            print_log('the full configuration produced no metric (no predictions yet?): '
                      'per_config.json/.csv are written, the query table and plot are not',
                      logger='current', level=logging.WARNING)
        paths = write_results(records, work_dir, metric, extra_costs=latency,
                              checkpoint=fingerprint)
        columns = list(dict.fromkeys(
            ['width', *[k for k in ('head_width', 'depth') if k in records[0]], 'scale',
             'input_shape', 'gflops']
            + [k for r in records for k in r if k.startswith('gflops_')]
            + ['mparams', *latency]
            + [k for r in records for k, v in r.items() if '/' in k and isinstance(v, float)]))
        headers = [c.replace('gflops_', '').rpartition('/')[2] for c in columns]
        table = format_table(records, columns, headers)
        print_log(f'per-configuration results ({len(records)} configurations; GFLOPs in all '
                  f'and per part; query table by {metric}):\n{table}\nwritten: '
                  + ', '.join(osp.relpath(p, work_dir) for p in paths.values())
                  + f' in {work_dir}', logger='current')
        visualizer, step = runner.visualizer, _training_iteration(runner)
        for record in records:
            visualizer.add_scalars(
                {f'per_config/{record["name"]}/{k}': v for k, v in record.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)
        if paths.get('plot') is not None:
            visualizer.add_image('per_config', mmcv.imread(paths['plot'], channel_order='rgb'),
                                 step=step)


@HOOKS.register_module()
class PerConfigOutputsHook(Hook):
    """Sends each configuration's drawings and dumped predictions to its own place.

    On ``before_{val,test}_config``: visualization hooks (mmdet's ``test_out_dir``,
    mmaction2's ``out_dir``) draw into ``<out dir>/<configuration>/``, a relative out
    dir being below ``work_dir/<timestamp>/`` (mmdet's rule, for every task); dump
    metrics (``--out``) write ``<name>_<configuration>.pkl``.
    """

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._roots: Dict[tuple, Optional[str]] = {}

    def before_val_config(self, runner, position: int, config: SubnetConfig) -> None:
        self._route(runner, runner.val_loop.evaluator, config)

    def before_test_config(self, runner, position: int, config: SubnetConfig) -> None:
        self._route(runner, runner.test_loop.evaluator, config)

    def _route(self, runner, evaluator, config: SubnetConfig) -> None:
        for hook in runner.hooks:
            if not hasattr(hook, '_visualizer'):  # other hooks' out_dir is not a drawing
                continue
            for attribute in ('test_out_dir', 'out_dir'):
                root = self._roots.setdefault((id(hook), attribute),
                                              getattr(hook, attribute, None))
                if isinstance(root, str):
                    setattr(hook, attribute,
                            osp.join(runner.work_dir, runner.timestamp, root, config.name))
        for metric in evaluator.metrics:
            root = self._roots.setdefault((id(metric), 'out_file_path'),
                                          getattr(metric, 'out_file_path', None))
            if isinstance(root, str):
                stem, extension = osp.splitext(root)
                metric.out_file_path = f'{stem}_{config.name}{extension}'


def register_per_config_hooks(runner) -> None:
    """Give the runner the per-configuration loops' hooks (once each)."""
    for hook_type in (PerConfigResultsHook, PerConfigOutputsHook):
        if not any(isinstance(hook, hook_type) for hook in runner.hooks):
            runner.register_hook(hook_type())
