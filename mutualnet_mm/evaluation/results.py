"""Per-configuration results: the table, the query table (Pareto front) and the plot."""
import csv
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

QUERY_TABLE_VERSION = 1


def _is_dominated(record: dict, others: Sequence[dict], metric: str, cost: str) -> bool:
    return any(o[cost] <= record[cost] and o[metric] >= record[metric] and
               (o[cost] < record[cost] or o[metric] > record[metric]) for o in others)


def pareto_front(records: Sequence[dict], metric: str, cost: str = 'gflops') -> List[dict]:
    """Records no other record beats on both ``cost`` (lower) and ``metric`` (higher).

    Returned in increasing cost.
    """
    usable = [r for r in records if r.get(metric) is not None and r.get(cost) is not None]
    front = [r for r in usable if not _is_dominated(r, usable, metric, cost)]
    unique = {(r[cost], r[metric]): r for r in sorted(front, key=lambda r: -r['width'])}
    return sorted(unique.values(), key=lambda r: r[cost])


class QueryTable:
    """Budget -> best configuration, from the Pareto front of an evaluation.

    Args:
        entries: Pareto records (each with ``width``, ``scale``, the cost and the metric).
        metric: The metric maximized.
        cost: The budget axis (``gflops`` or ``latency_ms``).
    """

    def __init__(self, entries: Sequence[dict], metric: str, cost: str = 'gflops') -> None:
        if not entries:
            raise ValueError('a query table needs at least one configuration')
        self.entries = sorted(entries, key=lambda e: e[cost])
        self.metric = metric
        self.cost = cost

    @classmethod
    def from_records(cls, records: Sequence[dict], metric: str,
                     cost: str = 'gflops') -> 'QueryTable':
        keep = ('name', 'width', 'scale', 'frames', 'input_shape', cost, metric)
        front = pareto_front(records, metric, cost)
        if not front:
            raise ValueError(f'no record has both {metric!r} and {cost!r}')
        return cls([{k: r.get(k) for k in keep} for r in front], metric, cost)

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
                'entries': self.entries}

    @classmethod
    def from_dict(cls, data: dict) -> 'QueryTable':
        if not isinstance(data, dict) or data.get('version') != QUERY_TABLE_VERSION:
            raise ValueError('not a mutualnet_mm query table (version '
                             f'{QUERY_TABLE_VERSION} expected)')
        return cls(data['entries'], data['metric'], data['cost'])

    def save(self, path: str) -> None:
        with open(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path: str) -> 'QueryTable':
        if not osp.isfile(path):
            raise FileNotFoundError(f'query table {path!r} does not exist (run tools/test.py '
                                    'first: it writes query_table.json in the work dir)')
        with open(path) as f:
            return cls.from_dict(json.load(f))


def format_table(records: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain-text table of ``records`` (one row each) with the given columns."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f'{value:.4g}'
        return '-' if value is None else str(value)
    rows = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ['  '.join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def write_results(records: Sequence[dict], out_dir: str, metric: Optional[str],
                  extra_costs: Sequence[str] = ()) -> Dict[str, str]:
    """Write ``per_config.json``/``.csv``, ``query_table.json`` and ``per_config.png``.

    Args:
        records: One dict per configuration (width, scale, gflops, metrics, ...).
        out_dir: Target directory.
        metric: The metric the query table maximizes (``None``: no metric yet; only the
            JSON and CSV tables are written).
        extra_costs: Further budget axes with a query table each (e.g. ``latency_ms``
            writes ``query_table_latency_ms.json``).

    Returns:
        The paths written, by kind.
    """
    paths = {'json': osp.join(out_dir, 'per_config.json'),
             'csv': osp.join(out_dir, 'per_config.csv'),
             'query_table': osp.join(out_dir, 'query_table.json'),
             'plot': osp.join(out_dir, 'per_config.png')}
    with open(paths['json'], 'w') as f:
        json.dump({'metric': metric, 'records': list(records)}, f, indent=2)
    columns: List[str] = []
    for record in records:
        columns += [k for k, v in record.items()
                    if k not in columns and not isinstance(v, (dict, list, tuple))]
    with open(paths['csv'], 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(records)
    if metric is None or all(r.get(metric) is None for r in records):
        return {'json': paths['json'], 'csv': paths['csv']}
    QueryTable.from_records(records, metric).save(paths['query_table'])
    for cost in extra_costs:
        path = osp.join(out_dir, f'query_table_{cost}.json')
        QueryTable.from_records(records, metric, cost).save(path)
        paths[f'query_table_{cost}'] = path
    plot_results(records, metric, paths['plot'])
    return paths


def plot_results(records: Sequence[dict], metric: str, path: str,
                 title: Optional[str] = None) -> None:
    """Metric against GFLOPs, one marker per configuration, the Pareto front joined."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    usable = [r for r in records if r.get(metric) is not None]
    widths = sorted({r['width'] for r in usable}, reverse=True)
    cmap = plt.get_cmap('viridis', max(len(widths), 2))
    for i, width in enumerate(widths):
        points = sorted((r for r in usable if r['width'] == width), key=lambda r: r['gflops'])
        ax.plot([r['gflops'] for r in points], [r[metric] for r in points], 'o:',
                color=cmap(i), label=f'width {width:g}', alpha=0.8)
    front = pareto_front(usable, metric)
    ax.plot([r['gflops'] for r in front], [r[metric] for r in front], '-', color='crimson',
            linewidth=2, label='Pareto front (query table)')
    for r in front:
        ax.annotate(f"{r['width']:g}-{r['scale']:g}", (r['gflops'], r[metric]),
                    textcoords='offset points', xytext=(4, -10), fontsize=7)
    ax.set_xlabel('GFLOPs (multiply-adds) per input')
    ax.set_ylabel(metric)
    ax.set_title(title or f'{metric} per (width, scale) configuration')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
