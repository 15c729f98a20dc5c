"""Tasks: each declared once, found from a model or a config, read by the shared code."""
import pytest
from mmengine.model import BaseDataPreprocessor, BaseModel, BaseTTAModel
from mmengine.registry import MODELS, DefaultScope

import mutualnet_mm  # noqa: F401  (registers the rescalers and distillers)
from mutualnet_mm import tasks
from mutualnet_mm.deploy.pipelines import scale_test_pipelines
from mutualnet_mm.engine import MutualTrainStep, SubnetConfig
from mutualnet_mm.engine.calibration import deterministic_pipeline, is_random
from mutualnet_mm.engine.distill import build_distiller
from mutualnet_mm.engine.rescale import build_rescaler, default_rescaler
from mutualnet_mm.tasks import (
    CLASSIFICATION,
    DETECTION,
    TASKS,
    VIDEO,
    Task,
    any_task,
    find_task,
    register_task,
    task_of,
    task_of_config,
)


class Model(BaseModel):
    def forward(self, *args, **kwargs):
        return None


def preprocessor(scope: str, name: str) -> BaseDataPreprocessor:
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(dict(type=f'{scope}.{name}'))


@pytest.mark.parametrize('task', list(TASKS.values()), ids=lambda t: t.name)
def test_every_declaration_names_real_components(task: Task) -> None:
    for name in task.data_preprocessors:  # each resolves in its library's registry
        assert task_of(Model(data_preprocessor=preprocessor(task.scope, name))) is task
    assert callable(build_rescaler(dict(type=task.rescaler)))
    if task.distiller is not None:
        assert build_distiller(dict(task.distiller)) is not None
    assert task.metrics and not set(task.crops) & set(task.resizes)


def test_the_task_of_a_model_is_its_preprocessors_through_wrappers() -> None:
    video = Model(data_preprocessor=preprocessor('mmaction', 'ActionDataPreprocessor'))
    assert task_of(video) is VIDEO

    class TTA(BaseTTAModel):
        def merge_preds(self, data_samples_list):
            return data_samples_list

    assert task_of(TTA(module=video)) is VIDEO  # its own preprocessor is generic

    class Subclassed(type(preprocessor('mmdet', 'DetDataPreprocessor'))):
        pass

    assert task_of(Model(data_preprocessor=Subclassed())) is DETECTION
    generic = Model(data_preprocessor=BaseDataPreprocessor())
    assert find_task(generic) is None
    with pytest.raises(ValueError, match='no task is registered for the data preprocessor '
                                         'BaseDataPreprocessor; register one with'):
        task_of(generic)


def test_the_task_of_a_config() -> None:
    assert task_of_config(dict(model=dict(data_preprocessor=dict(
        type='mmdet.DetDataPreprocessor')))) is DETECTION
    assert task_of_config(dict(data_preprocessor=dict(type='ClsDataPreprocessor'),
                               model=dict(type='ImageClassifier'))) is CLASSIFICATION
    # no type: the library's default preprocessor, by the config's scope
    assert task_of_config(dict(default_scope='mmpretrain', data_preprocessor=dict(
        num_classes=10), model=dict(type='ImageClassifier'))) is CLASSIFICATION
    # a preprocessor declared by its base class only, resolved in the registry
    assert task_of_config(dict(default_scope='mmdet', model=dict(data_preprocessor=dict(
        type='TrackDataPreprocessor')))) is DETECTION
    with pytest.raises(ValueError, match="default_scope 'mmseg' is no task's"):
        task_of_config(dict(default_scope='mmseg', model=dict(type='EncoderDecoder')))
    with pytest.raises(ValueError, match='no task is registered for the data preprocessor '
                                         'SegDataPreprocessor'):
        task_of_config(dict(model=dict(data_preprocessor=dict(type='SegDataPreprocessor'))))


def test_each_task_declares_its_own_random_transforms() -> None:
    assert is_random(dict(type='Mosaic'), DETECTION)
    assert not is_random(dict(type='Mosaic'), CLASSIFICATION)
    assert is_random(dict(type='RandAugment'), CLASSIFICATION)
    assert is_random(dict(type='RandomFlip'), VIDEO)  # every Random* type, in every task
    assert not is_random(dict(type='SampleFrames', test_mode=False), DETECTION)
    assert is_random(dict(type='SampleFrames', test_mode=False), VIDEO)
    # without a task: any registered task's declaration counts
    assert all(is_random(dict(type=name)) for name in ('Mosaic', 'RandAugment', 'Flip'))
    crop = [dict(type='RandomResizedCrop', scale=224)]
    assert deterministic_pipeline(crop, CLASSIFICATION)[0]['type'] == 'ResizeEdge'
    assert deterministic_pipeline(crop, DETECTION) == []  # a random step, dropped


def test_a_new_task_plugs_in_with_one_registration(monkeypatch) -> None:
    monkeypatch.setattr(tasks, 'TASKS', dict(TASKS))

    class PointsPreprocessor(BaseDataPreprocessor):
        pass

    points = register_task(Task(
        name='points', scope='', data_preprocessors=('PointsPreprocessor',),
        rescaler='ClsBatchRescaler', metrics=('points/mAP',), random=frozenset({'Jitter'}),
        resizes=('Voxelize',)))
    model = Model(data_preprocessor=PointsPreprocessor())
    assert task_of(model) is points and default_rescaler(model) == dict(type='ClsBatchRescaler')
    assert is_random(dict(type='Jitter'), points) and is_random(dict(type='Jitter'))
    cfg = dict(model=dict(data_preprocessor=dict(type='PointsPreprocessor')),
               test_dataloader=dict(dataset=dict(pipeline=[dict(type='Voxelize', scale=64)])))
    assert scale_test_pipelines(cfg, SubnetConfig(1.0, 0.5)) == 1
    assert cfg['test_dataloader']['dataset']['pipeline'][0]['scale'] == 32
    with pytest.raises(KeyError, match="task 'points' is already registered"):
        register_task(points)


def test_the_mutual_step_takes_the_tasks_distiller_unless_the_config_sets_one() -> None:
    from tests.engine.test_cls_mutual import classifier
    model = classifier()
    step = MutualTrainStep.from_config(dict(num_subnets=2), model)
    assert type(step.distiller).__name__ == 'LogitDistiller' and step.distiller.module == 'head'
    assert not step.distiller.label_loss
    assert MutualTrainStep.from_config(dict(num_subnets=2, distill=None), model).distiller \
        is None


def test_any_task_is_the_union_of_the_registered_ones() -> None:
    union = any_task()
    for task in TASKS.values():
        assert task.random <= union.random and set(task.crops) <= set(union.crops)
        assert set(task.frame_samplers) <= set(union.frame_samplers)
        assert task.random_resized_crops.items() <= union.random_resized_crops.items()
