"""AdaptiveInferencer: picks the query-table configuration of a budget and runs it exactly as
``set_width`` + that configuration's calibrated statistics, with no recalibration per call."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner

from mutualnet_mm.deploy import (
    AdaptiveInferencer,
    build_adaptive_model,
    calibrate_bn_stats,
    load_bn_state,
    load_bn_stats,
    save_bn_stats,
)
from mutualnet_mm.deploy.adaptive import task_rescaler
from mutualnet_mm.engine import calibrate_bn
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.evaluation import QueryTable
from mutualnet_mm.reliability.fingerprint import weights_fingerprint

FULL, MID, SMALL = SubnetConfig(1.0, 1.0), SubnetConfig(0.5, 0.75), SubnetConfig(0.25, 0.5)
DECOUPLED = SubnetConfig(0.25, 1.0, head_width=0.5)  # the neck and heads wider than the backbone
ALL = {FULL, MID, SMALL, DECOUPLED}
GFLOPS_TABLE = QueryTable([dict(width=1.0, scale=1.0, gflops=2.0, mAP=0.30),
                           dict(width=0.5, scale=0.75, gflops=0.6, mAP=0.20),
                           dict(width=0.25, head_width=0.5, scale=1.0, gflops=0.3, mAP=0.15),
                           dict(width=0.25, scale=0.5, gflops=0.1, mAP=0.10)], 'mAP')
LATENCY_TABLE = QueryTable([dict(width=1.0, scale=1.0, latency_ms=30.0, mAP=0.30),
                            dict(width=0.25, scale=0.5, latency_ms=5.0, mAP=0.10)],
                           'mAP', 'latency_ms')
NUM_BATCHES = 2


@pytest.fixture(scope='module')
def calibration_batches(demo_cfg) -> list:
    loader = Runner.build_dataloader(copy.deepcopy(demo_cfg.train_dataloader), seed=0)
    return [batch for _, batch in zip(range(NUM_BATCHES), loader)]


@pytest.fixture(scope='module')
def bn_stats_path(demo_cfg, demo_checkpoint, calibration_batches, tmp_path_factory) -> str:
    model = build_adaptive_model(demo_cfg, demo_checkpoint)
    stats = calibrate_bn_stats(model, calibration_batches, [FULL, MID, SMALL, DECOUPLED],
                               task_rescaler(model, demo_cfg), NUM_BATCHES)
    path = str(tmp_path_factory.mktemp('bn') / 'bn_stats.pth')
    save_bn_stats(path, stats, weights_fingerprint(model))
    return path


@pytest.fixture(scope='module')
def inferencer(demo_cfg, demo_checkpoint, bn_stats_path) -> AdaptiveInferencer:
    return AdaptiveInferencer(demo_cfg, demo_checkpoint, [GFLOPS_TABLE, LATENCY_TABLE],
                              bn_stats=bn_stats_path)


@pytest.fixture(scope='module')
def val_items(demo_cfg) -> list:
    """The validation images, through the config's own test pipeline."""
    dataset = Runner.build_dataloader(copy.deepcopy(demo_cfg.val_dataloader)).dataset
    return [dataset[i] for i in range(len(dataset))]


def reference_predictions(demo_cfg, checkpoint, batches, data_batch, config) -> list:
    """A fresh model: set_width + calibrate_bn at ``config``, then predict."""
    model = build_adaptive_model(demo_cfg, checkpoint)
    rescaler = task_rescaler(model, demo_cfg)
    calibrate_bn(model, batches, config, rescaler, NUM_BATCHES)
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(data_batch), False)
        inputs, samples = rescaler(data['inputs'], data['data_samples'], config)
        return model(inputs, samples, mode='predict')


def assert_same_predictions(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        a, b = a.pred_instances, b.pred_instances
        assert len(b) > 0
        assert torch.equal(a.labels, b.labels)
        assert (a.bboxes - b.bboxes).abs().max() <= 1e-4
        assert (a.scores - b.scores).abs().max() <= 1e-4
        assert torch.equal(a.masks, b.masks)


@pytest.mark.parametrize('budget, unit, expected', [
    (5.0, 'gflops', FULL), (2.0, 'gflops', FULL), (1.0, 'gflops', MID),
    (0.3, 'gflops', DECOUPLED), (0.2, 'gflops', SMALL),
    (50.0, 'ms', FULL), (20.0, 'ms', SMALL)])
def test_select_picks_the_most_accurate_configuration_within_budget(
        inferencer, budget, unit, expected) -> None:
    assert inferencer.select(budget, unit) == expected


def test_select_errors(inferencer) -> None:
    with pytest.raises(ValueError, match='cheapest needs 0.1'):
        inferencer.select(0.05)
    with pytest.raises(ValueError, match="budget_unit must be one of \\['gflops', 'ms'\\]"):
        inferencer.select(1.0, 'joules')


@pytest.mark.parametrize('budget, config', [(1.0, MID), (0.3, DECOUPLED), (0.2, SMALL)])
def test_calls_equal_set_width_and_calibrated_statistics(
        inferencer, demo_cfg, demo_checkpoint, calibration_batches, val_items,
        budget, config) -> None:
    paths = [item['data_samples'].img_path for item in val_items]
    result = inferencer(paths, budget=budget)
    assert result.config == config
    want = reference_predictions(demo_cfg, demo_checkpoint, calibration_batches,
                                 pseudo_collate(val_items), config)
    assert_same_predictions(result.predictions, want)


def test_switching_configurations_does_not_leak_state(inferencer, val_items) -> None:
    batch = pseudo_collate(val_items)
    first = inferencer.predict(copy.deepcopy(batch), SMALL)
    inferencer.predict(copy.deepcopy(batch), FULL)
    inferencer.predict(copy.deepcopy(batch), DECOUPLED)
    inferencer.predict(copy.deepcopy(batch), MID)
    assert_same_predictions(inferencer.predict(copy.deepcopy(batch), SMALL), first)


def test_array_inputs_equal_file_inputs(inferencer, val_items) -> None:
    import mmcv
    path = val_items[0]['data_samples'].img_path
    from_file = inferencer(path, budget=1.0)
    from_array = inferencer(mmcv.imread(path), budget=1.0)
    assert_same_predictions(from_array.predictions, from_file.predictions)


def test_calibrate_at_construction_and_stats_round_trip(demo_cfg, demo_checkpoint,
                                                        bn_stats_path, tmp_path) -> None:
    inferencer = AdaptiveInferencer(demo_cfg, demo_checkpoint, GFLOPS_TABLE, calibrate=True,
                                    num_calibration_batches=1)
    assert set(inferencer.bn_stats) == ALL
    name = 'backbone.layer1.0.bn1'
    small, full = inferencer.bn_stats[SMALL][name][0], inferencer.bn_stats[FULL][name][0]
    assert not torch.equal(small, full)
    assert torch.all(small[8:] == 0)  # 8 channels at width 0.25: the rest never ran
    path = str(tmp_path / 'bn_stats.pth')
    inferencer.save_bn_stats(path)
    loaded = load_bn_stats(path)
    assert torch.equal(loaded[SMALL][name][1], inferencer.bn_stats[SMALL][name][1])
    assert set(load_bn_stats(bn_stats_path)) == ALL


def test_inferencer_errors(demo_cfg, demo_checkpoint, bn_stats_path, tmp_path) -> None:
    with pytest.raises(ValueError, match='bn_stats=<path> or calibrate=True'):
        AdaptiveInferencer(demo_cfg, demo_checkpoint, GFLOPS_TABLE)
    partial = {config: state for config, state in load_bn_stats(bn_stats_path).items()
               if config != MID}
    with pytest.raises(KeyError, match='w0.50_s0.75'):
        AdaptiveInferencer(demo_cfg, demo_checkpoint, GFLOPS_TABLE, bn_stats=partial)
    only_gflops = AdaptiveInferencer(demo_cfg, demo_checkpoint, GFLOPS_TABLE,
                                     bn_stats=bn_stats_path)
    with pytest.raises(ValueError, match='no query table of latency_ms'):
        only_gflops.select(10.0, 'ms')
    with pytest.raises(FileNotFoundError, match='missing.json'):
        AdaptiveInferencer(demo_cfg, demo_checkpoint, str(tmp_path / 'missing.json'),
                           bn_stats=bn_stats_path)


@pytest.fixture(scope='module')
def other_fingerprint(demo_cfg) -> str:
    """The fingerprint of another checkpoint of the same config."""
    torch.manual_seed(1)
    return weights_fingerprint(build_adaptive_model(demo_cfg))


def test_files_of_another_checkpoint_are_refused(demo_cfg, demo_checkpoint, bn_stats_path,
                                                 other_fingerprint, tmp_path) -> None:
    fingerprint = weights_fingerprint(build_adaptive_model(demo_cfg, demo_checkpoint))
    assert other_fingerprint != fingerprint
    other_stats = str(tmp_path / 'other_bn_stats.pth')
    save_bn_stats(other_stats, load_bn_stats(bn_stats_path), other_fingerprint)
    table = str(tmp_path / 'query_table.json')
    QueryTable(GFLOPS_TABLE.entries, 'mAP', checkpoint=fingerprint).save(table)
    with pytest.raises(ValueError, match=f"BN statistics file '{other_stats}' belongs to another "
                                         f"checkpoint: it was measured on weights "
                                         f"{other_fingerprint}, checkpoint '{demo_checkpoint}' "
                                         f"has weights {fingerprint}; regenerate it: python "
                                         f"tools/calibrate_bn_stats.py"):
        AdaptiveInferencer(demo_cfg, demo_checkpoint, table, bn_stats=other_stats)
    other_table = str(tmp_path / 'other_query_table.json')
    QueryTable(GFLOPS_TABLE.entries, 'mAP', checkpoint=other_fingerprint).save(other_table)
    for query_table in (other_table, QueryTable.load(other_table)):
        with pytest.raises(ValueError, match=f'belongs to another checkpoint: it was measured '
                                             f'on weights {other_fingerprint}'):
            AdaptiveInferencer(demo_cfg, demo_checkpoint, query_table, bn_stats=bn_stats_path)
    assert AdaptiveInferencer(demo_cfg, demo_checkpoint, table,
                              bn_stats=bn_stats_path).select(1.0) == MID


def test_bn_stats_files_without_a_fingerprint_or_keys_are_refused(
        demo_cfg, demo_checkpoint, bn_stats_path, tmp_path) -> None:
    data = torch.load(bn_stats_path, weights_only=True)
    old = str(tmp_path / 'old.pth')
    torch.save({'version': 1, 'entries': data['entries']}, old)  # only the current format
    with pytest.raises(ValueError, match=f"'{old}' is not a mutualnet_mm BN statistics file"):
        load_bn_stats(old)
    torch.save({'version': 2, 'entries': data['entries']}, old)
    assert set(load_bn_stats(old)) == ALL  # readable without a check
    with pytest.raises(ValueError, match=f"BN statistics file '{old}' records no checkpoint "
                                         'fingerprint .* regenerate it: python '
                                         'tools/calibrate_bn_stats.py'):
        AdaptiveInferencer(demo_cfg, demo_checkpoint, GFLOPS_TABLE, bn_stats=old)
    broken = str(tmp_path / 'broken.pth')
    torch.save(dict(data, entries=[{'width': 1.0, 'scale': 1.0, 'stats': {}}]), broken)
    with pytest.raises(ValueError, match=f"BN statistics file '{broken}': entry 0 is not "
                                         r'\{width, scale, frames, stats\}'):
        load_bn_stats(broken)
    no_entries = str(tmp_path / 'no_entries.pth')
    torch.save({'version': 2, 'checkpoint': data['checkpoint']}, no_entries)
    with pytest.raises(ValueError, match=f"'{no_entries}' is not a mutualnet_mm BN statistics "
                                         'file .*a list of "entries"'):
        load_bn_stats(no_entries)
    truncated = str(tmp_path / 'truncated.pth')
    with open(bn_stats_path, 'rb') as f:
        Path(truncated).write_bytes(f.read()[:200])
    with pytest.raises(ValueError, match=f"'{truncated}' is not a readable checkpoint"):
        load_bn_stats(truncated)


@pytest.mark.parametrize('stat, value, problem', [
    (1, torch.ones(1), r'running_var has shape \(1,\); the norm has \(32,\) \(one value per '
                       r'channel\)'),
    (1, -torch.ones(32), r'running_var holds 32 negative values \(e\.g\. -1\); allowed: '
                         r'variances >= 0'),
    (0, torch.full((32,), float('nan')), r'running_mean holds 32 non-finite values \(e\.g\. '
                                         r'nan\); allowed: finite numbers'),
    (1, torch.full((32,), float('inf')), r'running_var holds 32 non-finite values'),
])
def test_bn_stats_of_a_bad_shape_or_value_are_refused(
        demo_cfg, demo_checkpoint, bn_stats_path, tmp_path, stat: int, value: torch.Tensor,
        problem: str) -> None:
    name = 'backbone.layer1.0.bn1'
    data = torch.load(bn_stats_path, weights_only=True)
    pair = list(data['entries'][2]['stats'][name])
    assert pair[stat].shape == (32,)
    pair[stat] = value
    data['entries'][2]['stats'][name] = tuple(pair)
    bad = str(tmp_path / 'bad.pth')
    torch.save(data, bad)
    config = SubnetConfig.from_record(data['entries'][2])
    message = rf"BN statistics file '{bad}', entry 2 \({config.name}\): {name}\.{problem}"
    with pytest.raises(ValueError, match=message):
        AdaptiveInferencer(demo_cfg, demo_checkpoint, GFLOPS_TABLE, bn_stats=bad)
    model = build_adaptive_model(demo_cfg, demo_checkpoint)
    with pytest.raises(ValueError, match=message):
        load_bn_stats(bad, model=model)
    if stat == 0 or value.shape == (32,):  # values need no model to be refused
        with pytest.raises(ValueError, match=message):
            load_bn_stats(bad)
    # In memory, without a file: the same check, before anything is copied.
    before = model.state_dict()[f'{name}.running_var'].clone()
    with pytest.raises(ValueError, match=rf'the BN statistics: {name}\.{problem}'):
        load_bn_state(model, {n: tuple(p) for n, p in data['entries'][2]['stats'].items()})
    assert torch.equal(model.state_dict()[f'{name}.running_var'], before)
