"""Where evaluation results go, and where the tools look for them: one rule.

``tools/test.py`` writes ``per_config.*`` and ``query_table*.json`` to the work dir of the
run (:func:`run_work_dir`); a training's validation writes them to the training's work
dir, where its checkpoints are. The tools that need a query table
(``tools/export_subnet.py --budget``, ``tools/calibrate_bn_stats.py``,
:class:`~mutualnet_mm.deploy.AdaptiveInferencer`) look in the same two places, in that
order (:func:`find_query_table`), unless given a table.
"""
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

from .results import QueryTable


def run_work_dir(cfg: Config, config_path: str, work_dir: Optional[str] = None) -> str:
    """The work dir of a tool run of ``cfg``: ``work_dir`` (``--work-dir``), else the
    config's ``work_dir``, else ``work_dirs/<config file name>``, as mmdet's tools."""
    if work_dir is not None:
        return work_dir
    if cfg.get('work_dir') is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def query_table_name(cost: str) -> str:
    """``query_table.json`` (GFLOPs) or ``query_table_<cost>.json``."""
    return 'query_table.json' if cost == 'gflops' else f'query_table_{cost}.json'


def query_table_dirs(cfg: Config, config_path: str, checkpoint: str,
                     work_dir: Optional[str] = None) -> List[str]:
    """Where the tools look for the query tables of ``checkpoint``, in order: the work
    dir ``tools/test.py`` writes to (:func:`run_work_dir`), then the checkpoint's folder
    (a training's validation)."""
    dirs = [run_work_dir(cfg, config_path, work_dir)]
    if osp.abspath(dirs[0]) != osp.dirname(osp.abspath(checkpoint)):
        dirs.append(osp.dirname(checkpoint) or '.')
    return dirs


def find_query_table(cfg: Config, config_path: str, checkpoint: str, cost: str = 'gflops',
                     fingerprint: Optional[str] = None,
                     work_dir: Optional[str] = None) -> QueryTable:
    """The first query table of ``cost`` in :func:`query_table_dirs` that loads (measured
    on the weights of ``fingerprint``, when given).

    Raises:
        FileNotFoundError: no such table; the message names the command that writes one
            and where it writes it.
        ValueError: the tables found do not load (the first one's error: other weights,
            outside their result set...).
    """
    dirs = query_table_dirs(cfg, config_path, checkpoint, work_dir)
    name = query_table_name(cost)
    errors = []
    for directory in dirs:
        path = osp.join(directory, name)
        if osp.isfile(path):
            try:
                return QueryTable.load(path, fingerprint, f'checkpoint {checkpoint!r}')
            except ValueError as error:
                errors.append(error)
    if errors:
        raise errors[0]
    command = f'python tools/test.py {config_path} {checkpoint}' + \
        (f' --work-dir {work_dir}' if work_dir is not None else '') + \
        ('' if cost == 'gflops' else ' --cfg-options test_cfg.latency.repeats=20')
    raise FileNotFoundError(f'no {name} in {" or ".join(dirs)}: `{command}` writes it to '
                            f'{osp.join(dirs[0], name)}')


def find_query_tables(cfg: Config, config_path: str, checkpoint: str,
                      fingerprint: Optional[str] = None,
                      work_dir: Optional[str] = None) -> List[QueryTable]:
    """The GFLOPs table (:func:`find_query_table`) and, where one is found, the latency
    table."""
    tables = [find_query_table(cfg, config_path, checkpoint, 'gflops', fingerprint, work_dir)]
    try:
        tables.append(find_query_table(cfg, config_path, checkpoint, 'latency_ms',
                                       fingerprint, work_dir))
    except FileNotFoundError:
        pass
    return tables


__all__ = ['find_query_table', 'find_query_tables', 'query_table_dirs', 'query_table_name',
           'run_work_dir']
