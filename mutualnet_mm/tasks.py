"""Tasks: what the shared machinery needs to know about each task, declared once.

A task names the data preprocessors its models use, its batch rescaler and default
distiller, its metrics (the headline first), and which pipeline transforms are random,
resize, crop, sample frames or load inputs. The mutual step, calibration, the
per-configuration loops, export and the inferencer look the task up here
(:func:`task_of`, :func:`task_of_config`) and name no transform or metric themselves.
A new task (say semantic segmentation) is one :func:`register_task` call plus its models.
"""
from dataclasses import dataclass, field, fields
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

#: Random augmentations of mmcv's common transforms (every ``Random*`` type is random too).
_COMMON_RANDOM = frozenset(('Albu', 'Albumentations', 'AutoAugment', 'ColorJitter',
                            'GaussianBlur', 'Lighting', 'MultiView', 'PhotoMetricDistortion'))


@dataclass(frozen=True)
class Task:
    """One task's declaration.

    Args:
        name: The task's name (``detection``, ``video``, ``classification``).
        scope: The registry scope of its OpenMMLab library (a config's
            ``default_scope``): the task of a config whose data preprocessor has no type.
        data_preprocessors: Class names of the data preprocessors of its models; a
            model's task is found through its preprocessor's class or bases.
        rescaler: Type of the registered batch rescaler of its batches.
        distiller: Config of the distiller used when ``mutual.distill`` is not given
            (``None``: no distillation).
        metrics: Metric keys, the headline (the query table's default) first.
        summary_metrics: Metric classes (or their bases) that log a summary of their own
            when they evaluate (the loops announce it).
        random: Random transforms besides the ``Random*`` types; calibration drops them.
        random_resizes: Random resizes and the key of their scales; calibration
            resizes to the largest.
        random_resized_crops: Random crops calibration replaces by the test-time resize
            and centre crop, with the resize's short edge per pixel of the crop.
        resizes: Test-time transforms whose ``scale`` (or ``scale_factor``) follows a
            configuration's scale.
        crops: Test-time transforms whose ``crop_size`` follows the scale.
        frame_samplers: Frame samplers: random outside their test mode.
        jittered_samplers: The frame samplers that take ``temporal_jitter``.
        frame_counter: The sampler whose ``clip_len`` follows a configuration's frames.
        annotation_loaders: Transforms the inferencer drops (no annotations to load).
        array_loaders: ``{file loader: array loader}`` the inferencer uses for arrays.
        inferencer_renamed: ``{written: original}``: what the stock inferencer renames
            in the test pipeline of the config it reads (undone before it reads again).
        inferencer_inserted: Transforms the stock inferencer inserts there.
    """

    name: str
    scope: str
    data_preprocessors: Tuple[str, ...]
    rescaler: str
    distiller: Optional[Mapping[str, Any]] = None
    metrics: Tuple[str, ...] = ()
    summary_metrics: Tuple[str, ...] = ()
    random: FrozenSet[str] = _COMMON_RANDOM
    random_resizes: Mapping[str, str] = field(default_factory=lambda: {
        'RandomResize': 'scale', 'RandomChoiceResize': 'scales'})
    random_resized_crops: Mapping[str, float] = field(default_factory=dict)
    resizes: Tuple[str, ...] = ('Resize',)
    crops: Tuple[str, ...] = ()
    frame_samplers: Tuple[str, ...] = ()
    jittered_samplers: Tuple[str, ...] = ()
    frame_counter: Optional[str] = None
    annotation_loaders: Tuple[str, ...] = ()
    array_loaders: Mapping[str, str] = field(default_factory=dict)
    inferencer_renamed: Mapping[str, str] = field(default_factory=dict)
    inferencer_inserted: Tuple[str, ...] = ()


#: The registered tasks by name.
TASKS: Dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Register ``task`` under its name (a name registered twice is an error)."""
    if task.name in TASKS:
        raise KeyError(f'task {task.name!r} is already registered')
    TASKS[task.name] = task
    return task


DETECTION = register_task(Task(
    name='detection',
    scope='mmdet',
    data_preprocessors=('DetDataPreprocessor',),
    rescaler='DetBatchRescaler',
    metrics=('coco/bbox_mAP', 'coco/segm_mAP', 'pascal_voc/mAP'),
    summary_metrics=('CocoMetric', 'VOCMetric'),  # and subclasses: LVIS, occluded COCO...
    random=_COMMON_RANDOM | {
        'CachedMixUp', 'CachedMosaic', 'CopyPaste', 'Corrupt', 'CutOut', 'Expand',
        'GeomTransform', 'InstaBoost', 'MinIoURandomCrop', 'MixUp', 'Mosaic', 'Rotate',
        'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'YOLOXHSVRandomAug', 'Color',
        'Brightness', 'Contrast', 'Equalize', 'Sharpness', 'AutoContrast', 'Invert',
        'Posterize', 'Solarize', 'SolarizeAdd'},
    annotation_loaders=('LoadAnnotations', 'LoadPanopticAnnotations'),
    array_loaders={'LoadImageFromFile': 'mmdet.LoadImageFromNDArray'},
    inferencer_renamed={'mmdet.InferencerLoader': 'LoadImageFromFile'}))

VIDEO = register_task(Task(
    name='video',
    scope='mmaction',
    data_preprocessors=('ActionDataPreprocessor',),
    rescaler='VideoBatchRescaler',
    distiller=dict(type='LogitDistiller', module='cls_head', label_loss=False),
    metrics=('acc/top1', 'acc/top5', 'acc/mean1'),
    random=_COMMON_RANDOM | {'Flip', 'ImgAug', 'MultiScaleCrop', 'PytorchVideoWrapper',
                             'TorchVisionWrapper', 'TorchVisonTransformWrapper'},
    crops=('CenterCrop', 'ThreeCrop', 'TenCrop'),
    frame_samplers=('SampleFrames', 'DenseSampleFrames', 'SampleAVAFrames', 'UniformSample',
                    'UniformSampleFrames', 'MMUniformSampleFrames'),
    jittered_samplers=('SampleFrames', 'DenseSampleFrames'),
    frame_counter='SampleFrames',
    inferencer_inserted=('InferencerPackInput',)))

CLASSIFICATION = register_task(Task(
    name='classification',
    scope='mmpretrain',
    data_preprocessors=('ClsDataPreprocessor',),
    rescaler='ClsBatchRescaler',
    distiller=dict(type='LogitDistiller', module='head', label_loss=False),
    metrics=('accuracy/top1', 'accuracy/top5'),
    random=_COMMON_RANDOM | {
        'AutoContrast', 'BEiTMaskGenerator', 'Brightness', 'Color', 'Contrast', 'Cutout',
        'EfficientNetRandomCrop', 'Equalize', 'Invert', 'MAERandomResizedCrop', 'Posterize',
        'RandAugment', 'Rotate', 'Sharpness', 'Shear', 'SimMIMMaskGenerator', 'Solarize',
        'SolarizeAdd', 'Translate'},
    random_resized_crops={'RandomResizedCrop': 256 / 224},  # test: 256 px, a 224 crop
    resizes=('Resize', 'ResizeEdge'),
    crops=('CenterCrop',)))


def any_task() -> Task:
    """Every registered task's pipeline declarations together (the fields from ``random``
    on): for a pipeline of unknown task."""
    tasks = list(TASKS.values())
    names = [f.name for f in fields(Task)]
    merged: Dict[str, Any] = {}
    for name in names[names.index('random'):]:
        values = [getattr(t, name) for t in tasks]
        if name == 'frame_counter':
            merged[name] = next(filter(None, values), None)
        elif isinstance(values[0], Mapping):
            merged[name] = {k: v for value in values for k, v in value.items()}
        else:  # tuples and the frozenset, in order without repeats
            merged[name] = type(values[0])(dict.fromkeys(v for value in values for v in value))
    return Task(name='any', scope='', data_preprocessors=(), rescaler='', **merged)


def _type_name(type_: Any) -> str:
    return (type_ if isinstance(type_, str) else type_.__name__).rpartition('.')[2]


def _match(names) -> Optional[Task]:
    for name in names:
        for task in TASKS.values():
            if name in task.data_preprocessors:
                return task
    return None


def _unknown(name: str) -> ValueError:
    known = {task.name: list(task.data_preprocessors) for task in TASKS.values()}
    return ValueError(f'no task is registered for the data preprocessor {name}; register '
                      f'one with mutualnet_mm.tasks.register_task (registered: {known})')


def find_task(model: Any) -> Optional[Task]:
    """The task of a model by its data preprocessor's class and bases, ``None`` if no
    registered task serves it. Wrappers (DDP, test-time augmentation) are looked
    through by their ``module``."""
    current = model
    while current is not None:
        preprocessor = getattr(current, 'data_preprocessor', None)
        if preprocessor is not None:
            found = _match(cls.__name__ for cls in type(preprocessor).__mro__)
            if found is not None:
                return found
        current = getattr(current, 'module', None)
    return None


def task_of(model: Any) -> Task:
    """:func:`find_task`, which must find one.

    Raises:
        ValueError: no registered task serves the model's preprocessor.
    """
    found = find_task(model)
    if found is None:
        inner = model
        while getattr(inner, 'module', None) is not None:
            inner = inner.module
        raise _unknown(type(getattr(inner, 'data_preprocessor', None)).__name__)
    return found


def task_of_config(cfg: Mapping) -> Task:
    """The task of a config's ``model``, by its data preprocessor's type (the model's,
    else the config's top-level one, as mmpretrain configs have it).

    A type that is not declared by name is resolved in the registries and matched by its
    bases; a preprocessor without a type is its library's default: the task of the
    config's ``default_scope``.

    Raises:
        ValueError: no registered task serves the preprocessor (or the scope).
    """
    preprocessor = ((cfg.get('model') or {}).get('data_preprocessor')
                    or cfg.get('data_preprocessor') or {}).get('type')  # mmpretrain: top level
    scope = cfg.get('default_scope')
    if preprocessor is None:  # the library's default preprocessor
        found = next((t for t in TASKS.values() if t.scope and t.scope == scope), None)
        if found is None:
            raise ValueError(f'the config has no model.data_preprocessor.type and its '
                             f'default_scope {scope!r} is no task\'s; registered tasks: '
                             + ', '.join(f'{t.name} ({t.scope})' for t in TASKS.values()))
        return found
    found = _match([_type_name(preprocessor)])
    if found is None and isinstance(preprocessor, str):
        from mmengine.registry import MODELS
        cls = MODELS.get(preprocessor if '.' in preprocessor or not scope
                         else f'{scope}.{preprocessor}')
        found = None if cls is None else _match(c.__name__ for c in cls.__mro__)
    elif found is None:
        found = _match(c.__name__ for c in preprocessor.__mro__)
    if found is None:
        raise _unknown(_type_name(preprocessor))
    return found
