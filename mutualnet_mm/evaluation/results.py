"""Per-configuration results: the table, the query table (Pareto front) and the plot.

The files of one evaluation form a result set
(:mod:`mutualnet_mm.reliability.result_set`): written together, put in place together,
each checked against the set's manifest when read.
"""
import csv
import math
import os.path as osp
import re
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..engine.subnet import SubnetConfig, check_scales
from ..reliability.fileio import atomic_write
from ..reliability.fingerprint import check_fingerprint
from ..reliability.result_set import (
    MANIFEST_NAME,
    check_in_result_set,
    read_json,
    write_json,
    write_result_set,
)

#: Configuration axes only some models have: a record or entry holds them where it does.
_OPTIONAL_AXES = ('head_width', 'depth')
#: 2: the table records the fingerprint of the checkpoint it was measured on.
QUERY_TABLE_VERSION = 2
#: The files a result set may hold (the query tables match ``query_table*.json``, the
#: plots of extra costs ``per_config_*.png``).
_RESULT_FILES = ('per_config.json', 'per_config.csv', 'per_config.png')
_QUERY_TABLE_FILE = re.compile(r'query_table(_[A-Za-z0-9_]+)?\.json')
_COST_PLOT_FILE = re.compile(r'per_config_[A-Za-z0-9_]+\.png')  # plots of extra costs
_QUERY_TABLE_FORMAT = (f'a JSON object with version {QUERY_TABLE_VERSION}, "metric", "cost", '
                       '"checkpoint" and "entries", as tools/test.py writes it')
REGENERATE_QUERY_TABLE = 'python tools/test.py CONFIG CHECKPOINT (it writes query_table.json ' \
    'to work_dirs/<config name>/, or to --work-dir)'


def _is_result_file(name: str) -> bool:
    """Whether an evaluation writes files named ``name``."""
    return name in _RESULT_FILES or \
        _QUERY_TABLE_FILE.fullmatch(name) is not None or _COST_PLOT_FILE.fullmatch(name) is not None


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (not a bool) other than NaN and infinity."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _is_dominated(record: dict, others: Sequence[dict], metric: str, cost: str) -> bool:
    return any(o[cost] <= record[cost] and o[metric] >= record[metric] and
               (o[cost] < record[cost] or o[metric] > record[metric]) for o in others)


def pareto_front(records: Sequence[dict], metric: str, cost: str = 'gflops') -> List[dict]:
    """Records no other record beats on both ``cost`` (lower) and ``metric`` (higher).

    Returned in increasing cost. Records without a finite number for both are left out.
    """
    usable = [r for r in records if is_finite_number(r.get(metric)) and
              is_finite_number(r.get(cost))]
    front = [r for r in usable if not _is_dominated(r, usable, metric, cost)]
    unique = {(r[cost], r[metric]): r for r in sorted(front, key=lambda r: -r['width'])}
    return sorted(unique.values(), key=lambda r: r[cost])


#: Budget units and the cost axis of their query tables.
BUDGET_COSTS = {'gflops': 'gflops', 'ms': 'latency_ms'}


def budget_cost(budget_unit: str) -> str:
    """The cost axis of the query table that a budget in ``budget_unit`` is looked up in.

    Raises:
        ValueError: ``budget_unit`` is not one of :data:`BUDGET_COSTS`.
    """
    if budget_unit not in BUDGET_COSTS:
        raise ValueError(f'budget_unit must be one of {sorted(BUDGET_COSTS)}, '
                         f'got {budget_unit!r}')
    return BUDGET_COSTS[budget_unit]


class QueryTable:
    """Budget -> best configuration, from the Pareto front of an evaluation.

    Args:
        entries: Pareto records (each with ``width``, ``scale``, the cost and the metric).
        metric: The metric maximized.
        cost: The budget axis (``gflops`` or ``latency_ms``).
        checkpoint: The fingerprint of the weights measured
            (:func:`~mutualnet_mm.reliability.fingerprint.weights_fingerprint`).
        source: Where the entries come from, for messages.

    Raises:
        ValueError: no entries, or an entry without a finite number for its width,
            scale, cost or metric (a NaN metric would win every budget), or with a
            head width that is not a number.
    """

    def __init__(self, entries: Sequence[dict], metric: str, cost: str = 'gflops',
                 checkpoint: Optional[str] = None, source: str = 'the query table') -> None:
        if not entries:
            raise ValueError('a query table needs at least one configuration')
        needed = ('width', 'scale', cost, metric)
        for index, entry in enumerate(entries):
            bad = [key for key in needed if not isinstance(entry, dict) or
                   not is_finite_number(entry.get(key))]
            if bad:
                found = {key: entry.get(key) for key in bad} if isinstance(entry, dict) \
                    else entry
                raise ValueError(f'{source}: entry {index} lacks a finite number for {bad} '
                                 f'(it has {found!r}); every entry needs finite numbers for '
                                 f'{list(needed)}')
            for key in _OPTIONAL_AXES:
                value = entry.get(key)
                if value is not None and not is_finite_number(value):
                    raise ValueError(f'{source}: entry {index} has {key} {value!r}; '
                                     f'allowed: a number, or no {key}')
        self.entries = sorted(entries, key=lambda e: e[cost])
        self.metric = metric
        self.cost = cost
        self.checkpoint = checkpoint
        self.source = source

    @classmethod
    def from_records(cls, records: Sequence[dict], metric: str, cost: str = 'gflops',
                     checkpoint: Optional[str] = None) -> 'QueryTable':
        keep = ('name', 'width', *_OPTIONAL_AXES, 'scale', 'frames', 'input_shape', cost,
                metric)
        left_out = [r for r in records if r.get(metric) is not None and r.get(cost) is not None
                    and not (is_finite_number(r[metric]) and is_finite_number(r[cost]))]
        if left_out:
            warnings.warn(
                f'the query table by {metric!r} and {cost!r} leaves out {len(left_out)} of '
                f'{len(records)} configurations whose values are not finite numbers: '
                + ', '.join(f'{r.get("name")} ({metric} {r[metric]!r}, {cost} {r[cost]!r})'
                            for r in left_out), stacklevel=2)
        front = pareto_front(records, metric, cost)
        if not front:
            raise ValueError(f'no record has finite numbers for both {metric!r} and {cost!r}')
        return cls([{k: r.get(k) for k in keep if k in r or k not in _OPTIONAL_AXES}
                    for r in front],
                   metric, cost, checkpoint)

    def lookup(self, budget: float) -> dict:
        """The most accurate configuration whose cost is within ``budget``.

        Raises:
            ValueError: no configuration fits the budget.
        """
        fitting = [e for e in self.entries if e[self.cost] <= budget]
        if not fitting:
            raise ValueError(f'no configuration fits a budget of {budget:g} {self.cost}; the '
                             f'cheapest needs {self.entries[0][self.cost]:g}')
        return max(fitting, key=lambda e: (e[self.metric], -e[self.cost]))

    def to_dict(self) -> dict:
        return {'version': QUERY_TABLE_VERSION, 'metric': self.metric, 'cost': self.cost,
                'checkpoint': self.checkpoint, 'entries': self.entries}

    @classmethod
    def from_dict(cls, data: Any, source: str = 'the data') -> 'QueryTable':
        """A table from :meth:`to_dict`'s output (``source`` named in errors).

        Raises:
            ValueError: ``data`` is not a query table, lacks a key, or has a bad entry.
        """
        if not isinstance(data, dict) or data.get('version') != QUERY_TABLE_VERSION:
            raise ValueError(f'{source} is not a mutualnet_mm query table (expected '
                             f'{_QUERY_TABLE_FORMAT})')
        missing = [key for key in ('metric', 'cost', 'entries') if key not in data]
        if missing:
            raise ValueError(f'{source} lacks {missing} (expected {_QUERY_TABLE_FORMAT})')
        metric, cost, entries = data['metric'], data['cost'], data['entries']
        if not isinstance(entries, list):
            raise ValueError(f'{source}: "entries" must be a list, got '
                             f'{type(entries).__name__}')
        return cls(entries, metric, cost, data.get('checkpoint'), source)

    def save(self, path: str) -> None:
        """Write the table as JSON (through a temporary file: never half written)."""
        atomic_write(path, write_json(self.to_dict()))

    @classmethod
    def load(cls, path: str, checkpoint: Optional[str] = None,
             checkpoint_name: str = 'the model') -> 'QueryTable':
        """Load a table, refusing one outside its result set or of other weights.

        Args:
            path: The JSON file.
            checkpoint: The fingerprint of the model the table is for (``None``: no check).
            checkpoint_name: Where that model's weights come from, for messages.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file does not parse, is not a query table, is not the one its
                result set's manifest names, or (with ``checkpoint``) was measured on other
                weights or records none.
        """
        if not osp.isfile(path):
            latency = 'latency_ms' in osp.basename(path)
            how = ('python tools/test.py CONFIG CHECKPOINT --cfg-options '
                   'test_cfg.latency.repeats=20 writes it (and query_table.json) to '
                   'work_dirs/<config name>/, or to --work-dir, with latency '
                   'measured on this machine' if latency else
                   'python tools/test.py CONFIG CHECKPOINT writes it to '
                   'work_dirs/<config name>/, or to --work-dir')
            raise FileNotFoundError(f'query table {path!r} does not exist: {how}')
        check_in_result_set(path, REGENERATE_QUERY_TABLE)
        source = f'query table {path!r}'
        table = cls.from_dict(read_json(path, 'query table', _QUERY_TABLE_FORMAT), source)
        if checkpoint is not None:
            check_fingerprint(source, table.checkpoint, checkpoint, checkpoint_name,
                              REGENERATE_QUERY_TABLE)
        return table


def resolve_config(width: Optional[float] = None, scale: float = 1.0,
                   frames: Optional[int] = None, budget: Optional[float] = None,
                   head_width: Optional[float] = None,
                   depth: Optional[float] = None,
                   budget_unit: str = 'gflops',
                   query_table: Union[str, QueryTable, None] = None,
                   checkpoint: Optional[str] = None,
                   checkpoint_name: str = 'the model') -> Tuple[SubnetConfig, Optional[dict]]:
    """The configuration to export: given, or the best within a budget.

    Args:
        width, scale, frames, head_width, depth: The configuration (with ``budget``
            None).
        budget: A cost budget, looked up in the query table.
        budget_unit: ``'gflops'`` or ``'ms'`` (latency).
        query_table: The table of the budget's unit, or its path (needed with
            ``budget``; :func:`~mutualnet_mm.evaluation.locations.find_query_table`
            finds the one of a config and checkpoint).
        checkpoint: The fingerprint of the weights to export: a table loaded from a path
            must record it (see :meth:`QueryTable.load`; ``None``: no check).
        checkpoint_name: Where those weights come from, for messages.

    Returns:
        ``(config, entry)``: the entry is the query-table row (None without a budget).

    Raises:
        ValueError: neither or both of ``width`` and ``budget`` given, an unknown unit, a
            table with another cost axis, of other weights, outside its result set or not
            parsing, or no configuration within the budget.
        FileNotFoundError: the table does not exist.
    """
    if (width is None) == (budget is None):
        raise ValueError('give either a width (and scale) or a budget, not '
                         + ('both' if width is not None else 'neither'))
    if budget is None:
        return SubnetConfig(float(width), check_scales([scale], 'config')[0], frames,
                            None if head_width is None else float(head_width),
                            None if depth is None else float(depth)), None
    cost = budget_cost(budget_unit)
    if query_table is None:
        raise ValueError('a budget needs a query table')
    table = query_table if isinstance(query_table, QueryTable) else \
        QueryTable.load(query_table, checkpoint, checkpoint_name)
    if table.cost != cost:
        raise ValueError(f'{table.source} is a table of {table.cost} budgets, not '
                         f'{budget_unit} ({cost})')
    entry = table.lookup(budget)
    return SubnetConfig.from_record(entry), entry


def format_table(records: Sequence[dict], columns: Sequence[str],
                 headers: Optional[Sequence[str]] = None) -> str:
    """A plain-text table of ``records`` (one row each) with the keys ``columns``, headed
    by ``headers`` (default: the keys)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f'{value:.4g}'
        return '-' if value is None else str(_csv_value(value))
    rows = [list(headers or columns)] + [[cell(r.get(c)) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ['  '.join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def write_results(records: Sequence[dict], out_dir: str, metric: Optional[str],
                  extra_costs: Sequence[str] = (),
                  checkpoint: Optional[str] = None) -> Dict[str, str]:
    """Write ``per_config.json``/``.csv``, ``query_table.json`` and ``per_config.png``
    (and a query table and a plot per extra cost) as one result set
    (:func:`~mutualnet_mm.reliability.result_set.write_result_set`).

    Args:
        records: One dict per configuration (width, scale, gflops, metrics, ...).
        out_dir: Target directory.
        metric: The metric the query table maximizes (``None``, or no finite value of it:
            only the JSON and CSV tables are written). Configurations whose metric or cost
            is not finite are left out of the query tables, with a warning.
        extra_costs: Further budget axes with a query table and a plot each (e.g.
            ``latency_ms`` writes ``query_table_latency_ms.json`` and
            ``per_config_latency_ms.png``).
        checkpoint: The fingerprint of the weights evaluated, recorded in every file.

    Returns:
        The paths written, by kind (``manifest``: ``result_set.json``).
    """
    writers: Dict[str, Callable[[str], None]] = {
        'json': write_json({'metric': metric, 'checkpoint': checkpoint,
                             'records': list(records)}),
        'csv': lambda path: _write_csv(records, path)}
    names = {'json': 'per_config.json', 'csv': 'per_config.csv'}
    if metric is not None and any(is_finite_number(r.get(metric)) for r in records):
        tables = {'query_table': QueryTable.from_records(records, metric,
                                                         checkpoint=checkpoint)}
        tables.update({f'query_table_{cost}': QueryTable.from_records(records, metric, cost,
                                                                      checkpoint)
                       for cost in extra_costs})
        for kind, table in tables.items():
            writers[kind] = write_json(table.to_dict())
            names[kind] = f'{kind}.json'
        writers['plot'] = lambda path: plot_results(records, metric, path)
        names['plot'] = 'per_config.png'
        for cost in extra_costs:  # per_config_latency_ms.png beside its query table
            writers[f'plot_{cost}'] = \
                lambda path, cost=cost: plot_results(records, metric, path, cost=cost)
            names[f'plot_{cost}'] = f'per_config_{cost}.png'
    elif metric is not None and any(r.get(metric) is not None for r in records):
        warnings.warn(f'no configuration has a finite {metric!r}: the query tables and the '
                      'plot are not written', stacklevel=2)
    header = {'checkpoint': checkpoint, 'metric': metric}
    written = write_result_set(out_dir, {names[kind]: write for kind, write in writers.items()},
                               _is_result_file, header)
    paths = {kind: written[name] for kind, name in names.items()}
    paths['manifest'] = written[MANIFEST_NAME]
    return paths


def _csv_value(value: Any) -> Any:
    """A CSV cell: shapes as ``CxHxW``."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return 'x'.join(str(v) for v in value)
    return value


def _write_csv(records: Sequence[dict], path: str) -> None:
    columns: List[str] = []
    for record in records:
        columns += [k for k, v in record.items()
                    if k not in columns and not isinstance(_csv_value(v), (dict, list, tuple))]
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows({k: _csv_value(v) for k, v in r.items()} for r in records)


def headline_metrics(records: Sequence[dict], metric: str) -> List[str]:
    """The metrics a plot shows: ``metric`` first, then one per other metric family.

    A family is a task's summary metric: each ``*_mAP`` of COCO (bbox, segm), top-1 and
    top-5 accuracy; other evaluators show ``metric`` alone.
    """
    keys = [k for r in records for k, v in r.items() if isinstance(v, (int, float))]
    families = [k for k in dict.fromkeys(keys)
                if k.endswith('_mAP') or k.rpartition('/')[2] in ('top1', 'top5')]
    return [metric] + [k for k in families if k != metric]


#: Markers and line styles per width: widths stay apart in grey-scale print.
_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*')
_LINESTYLES = (':', '--', '-.', (0, (1, 3)))
#: Colours per width: Okabe and Ito's colour-blind-safe palette without its yellow and
#: black (too faint on white; the colour of the front).
_COLOURS = ('#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9')
#: Axis titles of the costs a plot can show (others show their key).
_COST_LABELS = {'gflops': 'GFLOPs (multiply-adds) per input',
                'latency_ms': 'latency per input (ms, median of batch-1 runs)'}
_LABEL_SIZE = 7  # points
#: Where a label may go, tried in turn: offset from its point (points), alignment.
_LABEL_PLACES = (((4, -10), 'left'), ((6, -3), 'left'), ((4, 4), 'left'),
                 ((-4, -10), 'right'), ((-4, 4), 'right'))


def plot_results(records: Sequence[dict], metric: str, path: str,
                 title: Optional[str] = None, cost: str = 'gflops') -> None:
    """Each headline metric against ``cost``, one curve per width, the Pareto front joined.

    The front of each panel is the query table's rule applied to that panel's metric
    (the query table itself ranks by ``metric``, the first panel). Points on the front
    are labelled with their configuration's name (``w0.50 s0.75``; ``w0.50 h0.25 s0.75``
    with decoupled widths, where each head width has its marker and points are not
    joined): both ends of the front, then every other point whose label has room.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    metrics = headline_metrics(records, metric)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.0 * len(metrics), 4.6), dpi=120,
                             squeeze=False)
    widths = sorted({r['width'] for r in records}, reverse=True)
    axis = next((key for key in _OPTIONAL_AXES if any(r.get(key) is not None for r in records)),
                'head_width')  # the second axis a plot marks: head width, else depth
    heads = sorted({r[axis] for r in records if r.get(axis) is not None}, reverse=True)
    fronts: List[List[dict]] = []
    for ax, shown in zip(axes[0], metrics):
        usable = [r for r in records if r.get(shown) is not None and r.get(cost) is not None]
        for i, width in enumerate(widths):
            for j, head in enumerate(heads or [None]):
                points = sorted((r for r in usable if r['width'] == width and
                                 r.get(axis) == head), key=lambda r: r[cost])
                marker = _MARKERS[(j if heads else i) % len(_MARKERS)]
                ax.plot([r[cost] for r in points], [r[shown] for r in points],
                        marker=marker, markersize=5, color=_COLOURS[i % len(_COLOURS)],
                        linestyle='none' if heads else _LINESTYLES[i % len(_LINESTYLES)],
                        label=f'width {width:g}' if j == 0 else None, zorder=3)
        for j, head in enumerate(heads):  # the head widths' markers, in the legend only
            ax.plot([], [], marker=_MARKERS[j % len(_MARKERS)], linestyle='none',
                    color='grey', label=f'{axis.replace("_", " ")} {head:g}')
        front = pareto_front(usable, shown, cost)
        ax.plot([r[cost] for r in front], [r[shown] for r in front], '-', color='black',
                linewidth=2.2, alpha=0.6, zorder=2, label='Pareto front' + (
                    ' (query table)' if shown == metric else ''))
        fronts.append(front)
        ax.set_xlabel(_COST_LABELS.get(cost, cost))
        ax.set_ylabel(shown)
        ax.set_title(shown if len(metrics) > 1 else (title or f'{shown} per configuration'))
        ax.grid(alpha=0.3)
        legend_title = 'labels: w = width, ' + ('h = head width, ' if heads else '') + \
            's = input scale'
        ax.legend(fontsize=8, title=legend_title, title_fontsize=7)
    if title and len(metrics) > 1:
        fig.suptitle(title)
    fig.tight_layout()
    for ax, shown, front in zip(axes[0], metrics, fronts):  # placed in the final layout
        _label_front(ax, front, shown, cost)
    fig.savefig(path)
    plt.close(fig)


def _label_front(ax: Any, front: Sequence[dict], shown: str, cost: str) -> None:
    """Label the front's points by name, the ends first, each at the first of
    :data:`_LABEL_PLACES` where its (estimated) box is free and inside the axes."""
    if not front:
        return
    anchors = ax.transData.transform([(r[cost], r[shown]) for r in front])
    frame = ax.get_window_extent()
    pixels = ax.figure.dpi / 72  # per point
    order = list(dict.fromkeys([0, len(front) - 1, *range(1, len(front) - 1)]))
    taken: List[tuple] = []
    for index in order:
        text = SubnetConfig.from_record(front[index]).label
        size = (0.62 * _LABEL_SIZE * len(text) * pixels, 1.2 * _LABEL_SIZE * pixels)
        for (dx, dy), align in _LABEL_PLACES:
            x = anchors[index][0] + dx * pixels - (size[0] if align == 'right' else 0)
            y = anchors[index][1] + dy * pixels - 0.25 * size[1]  # the baseline's descent
            box = (x, y, x + size[0], y + size[1])
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and \
                frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and
                                  b[1] < box[3] for b in taken):
                taken.append(box)
                ax.annotate(text, (front[index][cost], front[index][shown]),
                            textcoords='offset points', xytext=(dx, dy), ha=align,
                            fontsize=_LABEL_SIZE)
                break
