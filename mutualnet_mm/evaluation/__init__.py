"""Per-configuration evaluation: the loops, cost counting, results (tables, query table, plot)."""
from .cost import count_cost
from .latency import measure_latency
from .loops import PerConfigTestLoop, PerConfigValLoop
from .results import QueryTable, format_table, pareto_front, plot_results, write_results

__all__ = ['PerConfigTestLoop', 'PerConfigValLoop', 'QueryTable', 'count_cost', 'format_table',
           'measure_latency', 'pareto_front', 'plot_results', 'write_results']
