"""Per-configuration results (Pareto front, query table, files) and cost counting."""
import copy
import csv
import json
import os
from pathlib import Path
from typing import Iterator

import matplotlib.colors
import matplotlib.image
import mmcv
import pytest
import torch
from torch import nn

from mutualnet_mm.engine import SubnetConfig
from mutualnet_mm.evaluation import QueryTable, count_cost, pareto_front, write_results
from mutualnet_mm.evaluation import results as results_module
from mutualnet_mm.evaluation.results import budget_cost, headline_metrics, plot_results
from mutualnet_mm.ops import convert_to_slimmable
from mutualnet_mm.reliability import result_set as result_set_module
from mutualnet_mm.reliability.fingerprint import weights_fingerprint
from mutualnet_mm.reliability.result_set import file_sha256

METRIC = 'coco/bbox_mAP'
WEIGHTS, OTHER_WEIGHTS = 'a' * 64, 'b' * 64


def record(width: float, scale: float, gflops: float, metric: float) -> dict:
    return {'name': f'w{width:.2f}_s{scale:g}', 'width': width, 'scale': scale,
            'input_shape': [3, round(64 * scale), round(64 * scale)], 'gflops': gflops,
            'mparams': 10 * width, METRIC: metric, 'coco/bbox_mAP_50': metric + 0.1}


RECORDS = [
    record(1.0, 1.0, 8.0, 0.40),
    record(1.0, 0.5, 2.0, 0.25),
    record(0.5, 1.0, 2.5, 0.24),  # dominated: costs more than (1.0, 0.5), scores less
    record(0.5, 0.5, 0.6, 0.15),
    record(0.25, 1.0, 0.7, 0.10),  # dominated by (0.5, 0.5)
    record(0.75, 1.0, 4.5, 0.33),
]


def test_pareto_front_drops_dominated_points_and_sorts_by_cost() -> None:
    front = pareto_front(RECORDS, METRIC)
    assert [(r['width'], r['scale']) for r in front] == [(0.5, 0.5), (1.0, 0.5), (0.75, 1.0),
                                                         (1.0, 1.0)]
    assert [r['gflops'] for r in front] == sorted(r['gflops'] for r in front)
    # Ties on both axes keep one point; records without the metric are left out.
    twin = dict(RECORDS[0], width=0.9, name='twin')
    assert len(pareto_front(RECORDS + [twin, {'width': 0.3, 'gflops': 0.1}], METRIC)) == 4


def test_query_table_lookup() -> None:
    table = QueryTable.from_records(RECORDS, METRIC)
    assert [e['name'] for e in table.entries] == ['w0.50_s0.5', 'w1.00_s0.5', 'w0.75_s1',
                                                  'w1.00_s1']
    assert table.lookup(3.0)['name'] == 'w1.00_s0.5'  # between points
    assert table.lookup(4.5)['name'] == 'w0.75_s1'  # exactly a point's cost
    assert table.lookup(100.0)['name'] == 'w1.00_s1'
    assert table.lookup(0.6)['name'] == 'w0.50_s0.5'
    with pytest.raises(ValueError, match='no configuration fits a budget of 0.5 gflops; the '
                                         'cheapest needs 0.6'):
        table.lookup(0.5)


def test_query_table_save_and_load(tmp_path: Path) -> None:
    table = QueryTable.from_records(RECORDS, METRIC)
    path = tmp_path / 'query_table.json'
    table.save(str(path))
    loaded = QueryTable.load(str(path))
    assert (loaded.metric, loaded.cost) == (METRIC, 'gflops')
    assert loaded.entries == table.entries
    assert loaded.lookup(3.0) == table.lookup(3.0)


def test_query_table_load_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / 'per_config.json'
    other.write_text(json.dumps({'metric': METRIC, 'records': RECORDS}))
    with pytest.raises(ValueError, match='not a mutualnet_mm query table'):
        QueryTable.load(str(other))
    listing = tmp_path / 'list.json'
    listing.write_text('[1, 2]')
    with pytest.raises(ValueError, match='not a mutualnet_mm query table'):
        QueryTable.load(str(listing))
    with pytest.raises(FileNotFoundError, match='missing.json'):
        QueryTable.load(str(tmp_path / 'missing.json'))
    with pytest.raises(ValueError, match='at least one configuration'):
        QueryTable([], METRIC)


def test_write_results_writes_one_record_per_configuration(tmp_path: Path) -> None:
    paths = write_results(RECORDS, str(tmp_path), METRIC, checkpoint=WEIGHTS)
    names = {'per_config.json', 'per_config.csv', 'query_table.json', 'per_config.png',
             'result_set.json'}
    assert {Path(p).name for p in paths.values()} == names
    assert {p.name for p in tmp_path.iterdir()} == names

    saved = json.loads((tmp_path / 'per_config.json').read_text())
    assert saved == {'metric': METRIC, 'checkpoint': WEIGHTS, 'records': RECORDS}
    manifest = json.loads((tmp_path / 'result_set.json').read_text())
    assert manifest['checkpoint'] == WEIGHTS and manifest['metric'] == METRIC
    assert manifest['files'] == {name: file_sha256(str(tmp_path / name))
                                 for name in names - {'result_set.json'}}
    with open(tmp_path / 'per_config.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [row['name'] for row in rows] == [r['name'] for r in RECORDS]
    assert [float(row[METRIC]) for row in rows] == [r[METRIC] for r in RECORDS]
    assert rows[0]['input_shape'] == '3x64x64'  # shapes as CxHxW, as in the log
    table = QueryTable.load(str(tmp_path / 'query_table.json'), WEIGHTS)
    assert len(table.entries) == 4 and table.lookup(8.0)['width'] == 1.0
    assert (table.checkpoint, table.metric) == (WEIGHTS, METRIC)

    image = matplotlib.image.imread(str(tmp_path / 'per_config.png'))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something was drawn


def test_write_results_extra_cost_axis(tmp_path: Path) -> None:
    records = [dict(r, latency_ms=r['gflops'] * 3) for r in RECORDS]
    paths = write_results(records, str(tmp_path), METRIC, extra_costs=('latency_ms',))
    table = QueryTable.load(paths['query_table_latency_ms'])
    assert table.cost == 'latency_ms' and table.lookup(9.0)['name'] == 'w1.00_s0.5'
    # Its plot, next to its query table and in the result set.
    plot = tmp_path / 'per_config_latency_ms.png'
    assert paths['plot_latency_ms'] == str(plot)
    manifest = json.loads((tmp_path / 'result_set.json').read_text())
    assert manifest['files']['per_config_latency_ms.png'] == file_sha256(str(plot))
    assert matplotlib.image.imread(str(plot)).std() > 0
    # A later set without latencies removes it with its query table.
    write_results(RECORDS, str(tmp_path), METRIC)
    assert not plot.exists() and not (tmp_path / 'query_table_latency_ms.json').exists()


def snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def full_disk(*args, **kwargs) -> None:
    raise OSError(28, 'No space left on device')


def test_a_write_that_fails_midway_leaves_the_previous_set(tmp_path: Path,
                                                             monkeypatch) -> None:
    write_results(RECORDS, str(tmp_path), METRIC, checkpoint=WEIGHTS)
    before = snapshot(tmp_path)
    newer = [dict(r, **{METRIC: r[METRIC] / 2}) for r in RECORDS]
    # The disk fills while the plot (the last file) is written, after the tables.
    monkeypatch.setattr(results_module, 'plot_results', full_disk)
    with pytest.raises(OSError, match='No space left'):
        write_results(newer, str(tmp_path), METRIC, checkpoint=OTHER_WEIGHTS)
    assert snapshot(tmp_path) == before  # no file changed, no temporary file left
    assert QueryTable.load(str(tmp_path / 'query_table.json'), WEIGHTS).checkpoint == WEIGHTS


def test_a_set_caught_half_renamed_is_refused(tmp_path: Path, monkeypatch) -> None:
    write_results(RECORDS, str(tmp_path), METRIC, checkpoint=WEIGHTS)
    renamed, replace = [], os.replace

    def killed_after_one_rename(source: str, target: str) -> None:
        if len(renamed) == 1:
            raise KeyboardInterrupt  # the process dies between two renames
        renamed.append(target)
        replace(source, target)

    newer = [dict(r, **{METRIC: r[METRIC] / 2}) for r in RECORDS]
    with monkeypatch.context() as patch:
        patch.setattr(result_set_module.os, 'replace', killed_after_one_rename)
        with pytest.raises(KeyboardInterrupt):
            write_results(newer, str(tmp_path), METRIC, checkpoint=OTHER_WEIGHTS)
    assert [Path(p).name for p in renamed] == ['result_set.json']
    # The manifest names the new set; the old query table still in place is refused.
    with pytest.raises(ValueError, match=r"query_table.json' is not the file the result set "
                                         r".*result_set.json' names .*rerun"):
        QueryTable.load(str(tmp_path / 'query_table.json'))


def test_a_set_without_a_query_table_removes_the_old_one(tmp_path: Path) -> None:
    write_results(RECORDS, str(tmp_path), METRIC, checkpoint=WEIGHTS)
    old_table = (tmp_path / 'query_table.json').read_bytes()
    write_results(RECORDS, str(tmp_path), None, checkpoint=OTHER_WEIGHTS)
    with pytest.raises(FileNotFoundError, match='query_table.json'):
        QueryTable.load(str(tmp_path / 'query_table.json'))
    assert not (tmp_path / 'per_config.png').exists()
    # Put back by hand, it is still not part of the set.
    (tmp_path / 'query_table.json').write_bytes(old_table)
    with pytest.raises(ValueError, match=r"not part of the latest result set: .*result_set.json"
                                         r"' names \['per_config.csv', 'per_config.json'\]"):
        QueryTable.load(str(tmp_path / 'query_table.json'))


DEAD_PID = 99999999  # above any pid_max: no such process


def test_the_next_evaluation_removes_the_temporaries_of_a_killed_one(tmp_path: Path,
                                                                     monkeypatch) -> None:
    write_results(RECORDS, str(tmp_path), METRIC, checkpoint=WEIGHTS)
    replace = os.replace

    def killed_after_the_manifest(source: str, target: str) -> None:
        if not target.endswith('result_set.json'):
            raise KeyboardInterrupt  # the process dies before putting its files in place
        replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(result_set_module.os, 'replace', killed_after_the_manifest)
        with pytest.raises(KeyboardInterrupt):
            write_results(RECORDS, str(tmp_path), METRIC, checkpoint=OTHER_WEIGHTS)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.'))
    assert f'.per_config.json.{os.getpid()}.tmp.json' in left
    (tmp_path / f'.per_config.png.{DEAD_PID}.tmp.png').write_bytes(b'from another process')
    theirs = [tmp_path / f'.notes.json.{DEAD_PID}.tmp.json', tmp_path / 'per_config.json.bak']
    for path in theirs:
        path.write_text('a user file')
    victim = tmp_path.parent / f'{tmp_path.name}-victim.csv'
    victim.write_text('a user file')
    link = tmp_path / f'.per_config.csv.{DEAD_PID}.tmp.csv'
    link.symlink_to(victim)
    write_results(RECORDS, str(tmp_path), METRIC, checkpoint=OTHER_WEIGHTS)
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.'))
    assert hidden == sorted([theirs[0].name, link.name])
    assert all(p.read_text() == 'a user file' for p in [*theirs, victim])


def test_only_files_of_the_earlier_set_are_removed(tmp_path: Path) -> None:
    latency = [dict(r, latency_ms=r['gflops'] * 3) for r in RECORDS]
    write_results(latency, str(tmp_path), METRIC, ['latency_ms'], checkpoint=WEIGHTS)
    assert (tmp_path / 'query_table_latency_ms.json').is_file()
    mine = tmp_path / 'query_table_mine.json'
    mine.write_text('kept by the user')
    write_results(RECORDS, str(tmp_path), METRIC, checkpoint=OTHER_WEIGHTS)
    assert not (tmp_path / 'query_table_latency_ms.json').exists()  # named by the old set
    assert mine.read_text() == 'kept by the user'
    write_results(RECORDS, str(tmp_path), None, checkpoint=OTHER_WEIGHTS)
    assert mine.read_text() == 'kept by the user'
    assert not (tmp_path / 'query_table.json').exists()


def test_query_table_of_other_weights_or_of_none_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'query_table.json'
    QueryTable.from_records(RECORDS, METRIC, checkpoint=WEIGHTS).save(str(path))
    with pytest.raises(ValueError, match=f"query table '{path}' belongs to another checkpoint: "
                                         f"it was measured on weights {WEIGHTS}, checkpoint "
                                         f"'x.pth' has weights {OTHER_WEIGHTS}; regenerate"):
        QueryTable.load(str(path), OTHER_WEIGHTS, "checkpoint 'x.pth'")
    unknown = QueryTable.from_records(RECORDS, METRIC).to_dict()
    del unknown['checkpoint']
    path.write_text(json.dumps(unknown))
    assert QueryTable.load(str(path)).checkpoint is None  # readable without a check
    with pytest.raises(ValueError, match='records no checkpoint fingerprint .* regenerate it: '
                                         'python tools/test.py CONFIG CHECKPOINT'):
        QueryTable.load(str(path), OTHER_WEIGHTS)
    path.write_text(json.dumps(dict(unknown, version=1)))  # only the current format
    with pytest.raises(ValueError, match='is not a mutualnet_mm query table'):
        QueryTable.load(str(path))


@pytest.mark.parametrize('content, message', [
    ('{"version": 2, "metric": "m", "cost": "gflops", "entr', 'does not parse as JSON'),
    ('{"version": 2, "cost": "gflops", "entries": []}', r"lacks \['metric'\]"),
    ('{"version": 2, "metric": "m", "cost": "gflops", "entries": {}}',
     '"entries" must be a list, got dict'),
    ('{"version": 2, "metric": "m", "cost": "gflops", "entries": [{"width": 1, "scale": 1, '
     '"m": 0.1}]}', r"entry 0 lacks a finite number for \['gflops'\] \(it has \{'gflops': "
                    r"None\}\); every entry needs finite numbers for \['width', 'scale', "
                    r"'gflops', 'm'\]"),
    ('[' * 100_000 + ']' * 100_000, 'is nested too deeply to parse as JSON; expected a JSON '
                                    'object with version 2'),
])
def test_query_table_that_does_not_parse_names_the_file(tmp_path: Path, content: str,
                                                         message: str) -> None:
    path = tmp_path / 'query_table.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=f"query table '{path}'.*{message}"):
        QueryTable.load(str(path))


@pytest.mark.parametrize('value', ['NaN', 'Infinity', '-Infinity', '1e999'])
@pytest.mark.parametrize('key', ['m', 'gflops'])
def test_query_table_with_a_non_finite_value_is_refused(tmp_path: Path, key: str,
                                                        value: str) -> None:
    entries = [{'width': 1.0, 'scale': 1.0, 'gflops': 2.0, 'm': 0.3},
               {'width': 0.5, 'scale': 1.0, 'gflops': 0.5, 'm': 0.2}]
    entries[1][key] = 'VALUE'  # Python's json reads (and writes) NaN and Infinity
    path = tmp_path / 'query_table.json'
    path.write_text(json.dumps({'version': 2, 'metric': 'm', 'cost': 'gflops',
                                'entries': entries}).replace('"VALUE"', value))
    with pytest.raises(ValueError, match=rf"query table '{path}': entry 1 lacks a finite "
                                         rf"number for \['{key}'\] \(it has \{{'{key}': "
                                         r"-?(nan|inf)\}\); every entry needs finite numbers"):
        QueryTable.load(str(path))


def test_a_configuration_with_a_nan_metric_is_left_out_of_the_front(tmp_path: Path) -> None:
    cheap_nan = record(0.25, 0.5, 0.1, float('nan'))  # would be on the front, and win 0.1
    with pytest.warns(UserWarning, match=r"the query table by 'coco/bbox_mAP' and 'gflops' "
                                         r'leaves out 1 of 7 configurations whose values are '
                                         r'not finite numbers: w0\.25_s0\.5 \(coco/bbox_mAP '
                                         r'nan, gflops 0\.1\)'):
        write_results(RECORDS + [cheap_nan], str(tmp_path), METRIC)
    text = (tmp_path / 'query_table.json').read_text()
    assert 'NaN' not in text
    table = QueryTable.load(str(tmp_path / 'query_table.json'))
    assert table.entries == QueryTable.from_records(RECORDS, METRIC).entries
    assert [r['name'] for r in pareto_front(RECORDS + [cheap_nan], METRIC)] == \
        [e['name'] for e in table.entries]
    # No finite metric at all: only the tables are written, with a warning.
    with pytest.warns(UserWarning, match="no configuration has a finite 'coco/bbox_mAP'"):
        paths = write_results([cheap_nan], str(tmp_path), METRIC)
    assert set(paths) == {'json', 'csv', 'manifest'}
    assert not (tmp_path / 'query_table.json').exists()


def test_weights_fingerprint_ignores_bn_statistics_only() -> None:
    torch.manual_seed(0)
    net = PlainNet()
    fingerprint = weights_fingerprint(net)
    assert len(fingerprint) == 64 and fingerprint == weights_fingerprint(copy.deepcopy(net))
    net.train()
    net(torch.randn(2, 3, 8, 8))  # moves the running statistics, as calibration does
    assert weights_fingerprint(net) == fingerprint
    with torch.no_grad():
        net.head[2].bias[0] += 1e-6
    assert weights_fingerprint(net) != fingerprint


class PlainNet(nn.Module):
    """Two parts: a conv backbone and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        self.upsample = nn.ConvTranspose2d(16, 8, 2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple:
        features = self.backbone(x)
        return self.head(features), self.upsample(features)


def test_write_results_without_a_metric_writes_only_the_tables(tmp_path: Path) -> None:
    # A barely trained detector may predict nothing: the evaluator then returns no metric.
    records = [{'name': 'w1.00_s1', 'width': 1.0, 'scale': 1.0, 'gflops': 2.0}]
    paths = write_results(records, str(tmp_path), None)
    assert sorted(paths) == ['csv', 'json', 'manifest']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['per_config.csv', 'per_config.json',
                                                          'result_set.json']


def giga(value: int) -> float:
    return pytest.approx(value / 1e9, rel=1e-9, abs=1e-15)


def mega(value: int) -> float:
    return pytest.approx(value / 1e6, rel=1e-9, abs=1e-15)


def test_count_cost_of_a_plain_net() -> None:
    net = PlainNet().eval()
    x = torch.randn(1, 3, 16, 16)
    cost = count_cost(net, lambda: net(x))
    # conv 3->8 on 16x16 outputs; conv 8->16 on 8x8 outputs; linear 16->10;
    # deconv 16->8 (2x2, stride 2): each of the 8x8 inputs spreads to 8 x 2x2 outputs.
    assert cost['backbone']['gmacs'] == giga(16 * 16 * 8 * 3 * 9 + 8 * 8 * 16 * 8 * 9)
    assert cost['backbone']['mparams'] == mega((8 * 3 * 9 + 8) + 2 * 8 + 16 * 8 * 9)
    assert cost['head']['gmacs'] == giga(16 * 10)
    assert cost['head']['mparams'] == mega(16 * 10 + 10)
    assert cost['upsample']['gmacs'] == giga(8 * 8 * 16 * 8 * 2 * 2)
    assert cost['upsample']['mparams'] == mega(16 * 8 * 2 * 2 + 8)
    parts = ('backbone', 'head', 'upsample')
    assert cost['total']['gmacs'] == pytest.approx(sum(cost[p]['gmacs'] for p in parts))
    assert cost['total']['mparams'] == pytest.approx(sum(cost[p]['mparams'] for p in parts))


def test_count_cost_follows_the_active_slices() -> None:
    net = convert_to_slimmable(PlainNet().eval())
    net.backbone[0].slim_in = False
    net.backbone[0].set_active_out_channels(4)  # width 0.5
    net.backbone[3].set_active_out_channels(8)
    net.upsample.set_active_out_channels(4)
    x = torch.randn(1, 3, 16, 16)
    logits, upsampled = net(x)
    assert logits.shape == (1, 10) and upsampled.shape == (1, 4, 16, 16)
    cost = count_cost(net, lambda: net(x))
    assert cost['backbone']['gmacs'] == giga(16 * 16 * 4 * 3 * 9 + 8 * 8 * 8 * 4 * 9)
    assert cost['backbone']['mparams'] == mega((4 * 3 * 9 + 4) + 2 * 4 + 8 * 4 * 9)
    assert cost['head']['gmacs'] == giga(8 * 10)
    assert cost['head']['mparams'] == mega(8 * 10 + 10)
    assert cost['upsample']['gmacs'] == giga(8 * 8 * 8 * 4 * 2 * 2)
    assert cost['upsample']['mparams'] == mega(8 * 4 * 2 * 2 + 4)


def test_count_cost_counts_a_layer_run_twice_once_in_params() -> None:
    layer = nn.Linear(4, 3)
    net = nn.Sequential()
    net.add_module('head', layer)
    cost = count_cost(net, lambda: (net(torch.randn(1, 4)), net(torch.randn(1, 4))))
    assert cost['head']['gmacs'] == giga(2 * 12)
    assert cost['head']['mparams'] == mega(15)


def test_the_plot_shows_every_metric_family_and_explains_its_labels(tmp_path) -> None:
    records = [dict(r, **{'coco/segm_mAP': r[METRIC] / 2, 'coco/bbox_mAP_50': 0.9})
               for r in RECORDS]
    assert headline_metrics(records, METRIC) == [METRIC, 'coco/segm_mAP']
    path = tmp_path / 'plot.png'
    plot_results(records, METRIC, str(path))
    one_panel = tmp_path / 'one.png'
    plot_results(RECORDS, METRIC, str(one_panel))
    width = mmcv.imread(str(path)).shape[1]
    assert width == 2 * mmcv.imread(str(one_panel)).shape[1]  # a panel per family


def test_a_missing_query_table_says_how_to_make_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match='tools/test.py CONFIG CHECKPOINT writes it'):
        QueryTable.load(str(tmp_path / 'query_table.json'))
    with pytest.raises(FileNotFoundError, match='--cfg-options test_cfg.latency.repeats=20'):
        QueryTable.load(str(tmp_path / 'query_table_latency_ms.json'))


@pytest.fixture
def drawn_figures(monkeypatch) -> Iterator[list]:
    """The figures plot_results draws, kept open for the test."""
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, 'close', figures.append)
    yield figures
    monkeypatch.undo()
    for figure in figures:
        plt.close(figure)


def grid_records() -> list:
    """The digits demo's grid: 4 widths at 32/27/23/18 px, most points on the front."""
    records = []
    for width in (1.0, 0.75, 0.5, 0.25):
        for pixels in (32, 27, 23, 18):
            scale = pixels / 32
            gflops = 0.04 * width ** 2 * scale ** 2
            records.append(dict(record(width, scale, gflops, 0.9 - 0.05 / (gflops + 0.01)),
                                name=SubnetConfig(width, scale).name))
    return records


def luminance(colour) -> float:
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
              for c in matplotlib.colors.to_rgb(colour)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_plot_labels_are_configuration_names_and_do_not_overlap(tmp_path,
                                                                 drawn_figures) -> None:
    records = grid_records()
    plot_results(records, METRIC, str(tmp_path / 'plot.png'))
    ax = drawn_figures[0].axes[0]
    labels = {text.get_text(): text for text in ax.texts}
    names = {r['name'].replace('_', ' ') for r in records}
    assert labels and set(labels) <= names  # w1.00 s0.719, never s0.71875
    front = pareto_front(records, METRIC)
    assert len(front) > 8
    for end in (front[0], front[-1]):
        assert end['name'].replace('_', ' ') in labels
    renderer = drawn_figures[0].canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in labels.values()]
    overlapping = [(a, b) for i, a in enumerate(labels) for j, b in enumerate(labels)
                   if i < j and boxes[i].overlaps(boxes[j])]
    assert not overlapping


def test_plot_widths_have_distinct_colours_visible_on_white(tmp_path, drawn_figures) -> None:
    plot_results(grid_records(), METRIC, str(tmp_path / 'plot.png'))
    ax = drawn_figures[0].axes[0]
    curves = [line for line in ax.lines if line.get_label().startswith('width')]
    front = next(line for line in ax.lines if line.get_label().startswith('Pareto front'))
    assert len(curves) == 4
    colours = [matplotlib.colors.to_rgb(line.get_color()) for line in curves]
    assert all(luminance(c) < 0.6 for c in colours)  # no yellow on white
    distances = [sum((a - b) ** 2 for a, b in zip(c, d)) ** 0.5
                 for i, c in enumerate(colours) for d in colours[i + 1:]]
    assert min(distances) > 0.3
    assert matplotlib.colors.to_rgb(front.get_color()) not in colours
    assert all(line.get_zorder() > front.get_zorder() for line in curves)  # points on top
    assert len({line.get_marker() for line in curves}) == 4  # apart in grey-scale print


def test_the_latency_plot_shows_latency(tmp_path, drawn_figures) -> None:
    records = [dict(r, latency_ms=1 + 10 * r['gflops']) for r in RECORDS]
    plot_results(records, METRIC, str(tmp_path / 'plot.png'), cost='latency_ms')
    ax = drawn_figures[0].axes[0]
    assert ax.get_xlabel().startswith('latency per input (ms')
    front = next(line for line in ax.lines if line.get_label().startswith('Pareto front'))
    assert list(front.get_xdata()) == [r['latency_ms'] for r in
                                       pareto_front(records, METRIC, 'latency_ms')]


def test_a_budget_unit_names_its_query_tables_cost_axis() -> None:
    assert (budget_cost('gflops'), budget_cost('ms')) == ('gflops', 'latency_ms')
    with pytest.raises(ValueError, match=r"budget_unit must be one of \['gflops', 'ms'\], "
                                         r"got 'joules'"):
        budget_cost('joules')
