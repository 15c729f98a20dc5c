"""Budget-driven inference: one adaptive model, the configuration that fits each call."""
import copy
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config
from mmengine.registry import DefaultScope

from ..engine.subnet import SubnetConfig
from ..evaluation.locations import find_query_tables
from ..evaluation.results import REGENERATE_QUERY_TABLE, QueryTable, budget_cost
from ..ops import WidthSnapshot
from ..reliability.fingerprint import check_fingerprint, weights_fingerprint
from ..tasks import task_of
from .adaptive import (
    build_adaptive_model,
    calibration_loader,
    config_scope,
    load_config,
    task_rescaler,
)
from .bn_stats import (
    BNState,
    BNStateSwitch,
    calibrate_bn_stats,
    load_bn_stats,
    save_bn_stats,
)

ImageInput = Union[str, np.ndarray, dict]


def _checked_table(table: QueryTable, fingerprint: str, checkpoint_name: str) -> QueryTable:
    """``table``, if it records no fingerprint or ``fingerprint`` (an object, not a file:
    its maker vouches for it)."""
    if table.checkpoint is not None:
        check_fingerprint(f'query table of {table.cost} (given as an object)', table.checkpoint,
                          fingerprint, checkpoint_name, REGENERATE_QUERY_TABLE)
    return table


class InferenceResult(NamedTuple):
    """What one call ran: the predictions (data samples) and the configuration."""

    predictions: list
    config: SubnetConfig


class AdaptiveInferencer:
    """Runs the configuration of a query table that fits a budget, per call.

    The BN statistics of every configuration of the tables are loaded (or calibrated)
    once; a call sets the width of its configuration, copies in its statistics,
    rescales the batch and predicts.

    Args:
        config: The adaptive model's config (path or :class:`Config`).
        checkpoint: Its weights.
        query_table: A query table (path or :class:`QueryTable`), or several with
            different cost axes (``gflops``, ``latency_ms``). Files must record the
            fingerprint of ``checkpoint``'s weights (tools/test.py writes it); objects
            that record one must match too. ``None``: the tables tools/test.py wrote for
            the config and checkpoint
            (:func:`~mutualnet_mm.evaluation.locations.find_query_tables`).
        bn_stats: Per-configuration statistics: a path written by
            :func:`save_bn_stats` (``tools/calibrate_bn_stats.py``; it must record the
            fingerprint of ``checkpoint``'s weights) or the mapping.
        calibrate: Without ``bn_stats``, calibrate every configuration now on
            ``num_calibration_batches`` batches of the config's training dataloader.
        num_calibration_batches: See ``calibrate``.
        device: Where the model runs.
        work_dir: With ``query_table=None``: the ``--work-dir`` of that tools/test.py run
            (default: the config's, else ``work_dirs/<config name>``).

    Example:
        >>> inferencer = AdaptiveInferencer('configs/x.py', 'epoch_12.pth',
        ...                                 bn_stats='work_dirs/x/bn_stats.pth')
        >>> # the tables of `python tools/test.py configs/x.py epoch_12.pth` (work_dirs/x/)
        >>> result = inferencer('demo.jpg', budget=2.0)  # GFLOPs
        >>> result.config, result.predictions[0].pred_instances
    """

    def __init__(self, config: Union[str, Config], checkpoint: Optional[str],
                 query_table: Union[str, QueryTable, Sequence[Union[str, QueryTable]],
                                    None] = None,
                 bn_stats: Union[str, Dict[SubnetConfig, BNState], None] = None,
                 calibrate: bool = False, num_calibration_batches: int = 8,
                 device: str = 'cpu', work_dir: Optional[str] = None) -> None:
        self.cfg = load_config(config)
        self.model = build_adaptive_model(self.cfg, checkpoint, device)
        self.fingerprint = weights_fingerprint(self.model)
        name = f'checkpoint {checkpoint!r}' if checkpoint is not None else \
            'the model (no checkpoint)'
        if query_table is None:
            if checkpoint is None:
                raise ValueError('AdaptiveInferencer without a checkpoint needs query_table')
            query_table = find_query_tables(self.cfg, self.cfg.filename, checkpoint,
                                            self.fingerprint, work_dir)
        tables = [query_table] if isinstance(query_table, (str, os.PathLike, QueryTable)) \
            else list(query_table)
        tables = [_checked_table(t, self.fingerprint, name) if isinstance(t, QueryTable)
                  else QueryTable.load(os.fspath(t), self.fingerprint, name) for t in tables]
        self.tables = {table.cost: table for table in tables}
        self.configs = list(dict.fromkeys(
            SubnetConfig.from_record(entry) for table in tables for entry in table.entries))
        self.rescaler = task_rescaler(self.model, self.cfg)
        if bn_stats is not None:
            stats = load_bn_stats(os.fspath(bn_stats), self.fingerprint, name, self.model) \
                if isinstance(bn_stats, (str, os.PathLike)) else dict(bn_stats)
            missing = [c.name for c in self.configs if c not in stats]
            if missing:
                raise KeyError(f'the BN statistics lack configuration(s) {missing} of the '
                               f'query table; they hold {[c.name for c in stats]}')
        elif calibrate:
            loader = calibration_loader(self.cfg, task=task_of(self.model))
            stats = calibrate_bn_stats(self.model, loader, self.configs, self.rescaler,
                                       num_calibration_batches)
        else:
            raise ValueError('AdaptiveInferencer needs BN statistics per configuration: '
                             'pass bn_stats=<path> or calibrate=True')
        self.bn_stats = {config: stats[config] for config in self.configs}
        # one check of each configuration now, then switches of a fraction of a
        # millisecond (the widths restored, the statistics copied in one batch)
        self._switches = {config: (WidthSnapshot(self.model, config.width,
                                                 config.head_width, config.depth),
                                   BNStateSwitch(self.model, self.bn_stats[config]))
                          for config in self.configs}
        self._pipelines: Dict[str, Compose] = {}

    def select(self, budget: float, budget_unit: str = 'gflops') -> SubnetConfig:
        """The most accurate configuration within ``budget`` (``'gflops'`` or ``'ms'``).

        Raises:
            ValueError: an unknown unit, no table with that unit, or nothing fits.
        """
        cost = budget_cost(budget_unit)
        if cost not in self.tables:
            raise ValueError(f'no query table of {cost} budgets; the inferencer has '
                             f'{sorted(self.tables)}')
        return SubnetConfig.from_record(self.tables[cost].lookup(budget))

    @torch.no_grad()
    def predict(self, data_batch: dict, config: SubnetConfig) -> list:
        """Predict a collated batch (``inputs``, ``data_samples``) at ``config``."""
        if config not in self.bn_stats:
            raise KeyError(f'{config.name} is not a configuration of the query table; '
                           f'known: {[c.name for c in self.bn_stats]}')
        widths, statistics = self._switches[config]
        widths.restore()
        statistics.load()
        data = self.model.data_preprocessor(data_batch, False)
        inputs, samples = self.rescaler(data['inputs'], data['data_samples'], config)
        return self.model(inputs, samples, mode='predict')

    def __call__(self, inputs: Union[ImageInput, Sequence[ImageInput]], budget: float,
                 budget_unit: str = 'gflops') -> InferenceResult:
        """Predict images (paths or HWC BGR arrays) or pipeline input dicts within ``budget``.

        Returns:
            The predictions (one data sample per input) and the configuration that ran.
        """
        config = self.select(budget, budget_unit)
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        packed = [self._pipeline(item)(self._pipeline_input(item, i))
                  for i, item in enumerate(items)]
        data_batch = {'inputs': [p['inputs'] for p in packed],
                      'data_samples': [p['data_samples'] for p in packed]}
        return InferenceResult(self.predict(data_batch, config), config)

    def save_bn_stats(self, path: str) -> None:
        """Save the per-configuration statistics (load them with ``bn_stats=path``)."""
        save_bn_stats(path, self.bn_stats, self.fingerprint)

    @staticmethod
    def _pipeline_input(item: ImageInput, index: int) -> dict:
        if isinstance(item, dict):
            return copy.deepcopy(item)
        if isinstance(item, np.ndarray):
            return dict(img=item, img_id=index)
        return dict(img_path=os.fspath(item), img_id=index)

    def _pipeline(self, item: ImageInput) -> Compose:
        """The test pipeline, loading arrays or files, without annotation loading."""
        kind = 'array' if isinstance(item, np.ndarray) else 'other'
        if kind not in self._pipelines:
            task = task_of(self.model)
            transforms: List[dict] = []
            for transform in copy.deepcopy(get_test_pipeline_cfg(self.cfg)):
                name = str(transform['type']).rpartition('.')[2]
                if name in task.annotation_loaders:
                    continue
                if kind == 'array' and name in task.array_loaders:
                    transform['type'] = task.array_loaders[name]
                transforms.append(transform)
            with DefaultScope.overwrite_default_scope(config_scope(self.cfg)):
                self._pipelines[kind] = Compose(transforms)
        return self._pipelines[kind]
