"""``benchmarks/train_overhead.py``: the plain passes do the mutual step's work, pass by pass.

The ratio the benchmark reports means something only if each plain pass computes what the
mutual step's pass of its configuration computes: the same loss from the same weights,
batch and sampled RoIs.
"""
import importlib.util
import os.path as osp
import site
import sys

import pytest

_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'benchmarks')


@pytest.fixture(scope='module')
def overhead(tmp_path_factory):
    """The benchmark's module (it imports its sibling ``common``) and the demo's sides."""
    sys.path.insert(0, _DIR)
    try:
        spec = importlib.util.spec_from_file_location('benchmarks_train_overhead',
                                                      osp.join(_DIR, 'train_overhead.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(_DIR)
    common = sys.modules['common']
    root = common.generated_data(64, num_train=2, root=str(tmp_path_factory.mktemp('data')))
    cfg = common.config_on_generated_data(common.DEMO_CONFIG, root, 64, 2)
    model, optim_wrapper, step = module.build_mutual_side(cfg)
    sides, cohort, batches = module.build_sides(step, model, optim_wrapper, cfg,
                                                common.first_batch(cfg), 0, 'cpu')
    return module, sides, cohort, batches


def test_every_plain_pass_computes_the_loss_of_its_mutual_pass(overhead) -> None:
    module, sides, cohort, batches = overhead
    assert {config.scale for config in cohort} != {1.0}  # rescaled batches are compared
    for _ in range(2):  # every round repeats the same work
        for case in sides.cases[::-1]:  # plain passes before the mutual step, too
            case.setup()
            case.run()
    rows, largest, counts_agree = module.evidence(cohort, batches, sides)
    assert len(sides.mutual) == 2 and all(len(rounds) == 2 for rounds in sides.plain)
    assert largest <= 1e-6
    assert counts_agree
    for index, row in enumerate(rows):
        mutual, plain = sides.mutual[0][index], sides.plain[index][0]
        assert mutual.loss == pytest.approx(plain.loss, rel=1e-6)
        assert mutual.counts == plain.counts and mutual.counts['sampled_rois'] > 0
        assert row['input'] == 'x'.join(map(str, batches[index].inputs.shape[-2:]))


def test_the_plain_pass_preprocesses_the_images_of_its_batch(overhead) -> None:
    module, sides, cohort, batches = overhead
    for twin, batch in zip(sides.twins, batches):
        preprocessor = twin.data_preprocessor
        data = preprocessor(dict(inputs=list(batch.images)), True)
        # The images are the batch as uint8: back through the preprocessor, the batch to
        # within half a grey level, padded alike.
        assert data['inputs'].shape == batch.inputs.shape
        tolerance = 0.5 / preprocessor.std.min().item() + 1e-5
        assert (data['inputs'] - batch.inputs).abs().max().item() <= tolerance


def test_the_profile_names_files_without_their_install_directories(overhead) -> None:
    common = sys.modules['common']
    site_packages = site.getsitepackages()[0]
    line = (f'  24  0.042  {site_packages}/mmdet/models/x.py:65(forward)\n'
            f'  10  0.010  {common.REPO}/mutualnet_mm/ops/layers.py:108(sliced_weights)\n'
            f'  12  0.001  /elsewhere/y.py:1(f)\n')
    assert common.without_install_dirs(line) == (
        '  24  0.042  mmdet/models/x.py:65(forward)\n'
        '  10  0.010  mutualnet_mm/ops/layers.py:108(sliced_weights)\n'
        '  12  0.001  /elsewhere/y.py:1(f)\n')
