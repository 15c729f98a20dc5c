"""The tree-crown demo config on real tiles: one mutual-learning iteration (a tile with
ignored crown pieces and a tile without a crown in the batch), and mmdet's COCO evaluator
(pycocotools) on the validation tiles."""
import copy
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from pycocotools.coco import COCO

import mutualnet_mm  # noqa: F401  (registers the slimmable parts)
from mutualnet_mm.datasets.trees import TREE_CLASSES, write_trees_coco
from mutualnet_mm.engine import MutualTrainStep
from mutualnet_mm.ops import set_width

CONFIG = Path(__file__).parents[2] / 'configs/demo/retinanet_mutual_r18_trees.py'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('trees') / 'trees'
    write_trees_coco(root)
    return root


@pytest.fixture(scope='module')
def cfg(data_root: Path) -> Config:
    cfg = Config.fromfile(str(CONFIG))
    coco = COCO(str(data_root / 'annotations/instances_train.json'))
    image_ids = coco.getImgIds()
    with_ignored = next(i for i, image_id in enumerate(image_ids)
                        if any(a['iscrowd'] for a in coco.imgToAnns[image_id])
                        and any(not a['iscrowd'] for a in coco.imgToAnns[image_id]))
    empty = next(i for i, image_id in enumerate(image_ids)
                 if not any(not a['iscrowd'] for a in coco.imgToAnns[image_id]))
    loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.merge_from_dict({
        'train_dataloader': dict(loader, dataset=dict(
            data_root=f'{data_root}/', indices=[with_ignored, empty])),
        'train_dataloader.dataset.pipeline.3.prob': 0.0,  # no flip: a fixed batch
        'val_dataloader': dict(loader, dataset=dict(data_root=f'{data_root}/', indices=2)),
        'model.test_cfg.score_thr': 0.0,  # an untrained model's scores are all low
    })
    cfg.val_evaluator.ann_file = str(data_root / 'annotations/instances_val.json')
    return cfg


@pytest.fixture(scope='module')
def trained(cfg: Config) -> torch.nn.Module:
    """The demo RetinaNet after one mutual-learning iteration on two real tiles."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    data = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    assert len(data['data_samples'][0].ignored_instances) > 0
    assert len(data['data_samples'][1].gt_instances) == 0
    mutual = {k: v for k, v in cfg.train_cfg.mutual.items() if k != 'full_only_fraction'}
    step = MutualTrainStep.from_config(mutual, model, seed=0)
    before = copy.deepcopy(model.bbox_head.retina_cls.weight.detach())
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log_vars = step(model, data, optim_wrapper, iteration=1)
    assert {'loss_full', 'loss_mid1', 'loss_mid2', 'loss_min'} <= set(log_vars)
    assert all(torch.isfinite(value).all() for value in log_vars.values())
    assert not torch.equal(before, model.bbox_head.retina_cls.weight)
    return model.eval()


def evaluate(cfg: Config, samples: list, data_batch=None) -> dict:
    evaluator = Evaluator(copy.deepcopy(cfg.val_evaluator))
    evaluator.dataset_meta = dict(classes=TREE_CLASSES)
    evaluator.process(samples, data_batch)
    return evaluator.evaluate(len(samples))


def test_one_iteration_then_the_coco_evaluator_on_real_validation_tiles(
        cfg: Config, trained: torch.nn.Module) -> None:
    data = next(iter(Runner.build_dataloader(cfg.val_dataloader, seed=0)))
    set_width(trained, 0.5)
    with torch.no_grad():
        outputs = trained.test_step(data)
    set_width(trained, 1.0)
    assert all(len(output.pred_instances) > 0 for output in outputs)
    metrics = evaluate(cfg, outputs, data)
    assert 0.0 <= metrics['coco/bbox_mAP'] <= metrics['coco/bbox_mAP_50'] <= 1.0


def annotations_as_predictions(coco: COCO, crowd_score: float = 0.0) -> list:
    """Every tile's kept boxes as predictions; ignored pieces too when ``crowd_score``."""
    samples = []
    for image in coco.dataset['images']:
        boxes, scores = [], []
        for annotation in coco.imgToAnns[image['id']]:
            if annotation['iscrowd'] and not crowd_score:
                continue
            x, y, w, h = annotation['bbox']
            boxes.append([x, y, x + w, y + h])
            scores.append(crowd_score if annotation['iscrowd'] else 1.0)
        samples.append(dict(
            img_id=image['id'], ori_shape=(image['height'], image['width']),
            pred_instances=InstanceData(
                bboxes=torch.tensor(boxes).reshape(-1, 4), scores=torch.tensor(scores),
                labels=torch.zeros(len(boxes), dtype=torch.long))))
    return samples


def test_detections_on_ignored_crown_pieces_do_not_count_as_false_positives(
        cfg: Config, data_root: Path) -> None:
    coco = COCO(str(data_root / 'annotations/instances_val.json'))
    assert evaluate(cfg, annotations_as_predictions(coco))['coco/bbox_mAP'] == 1.0
    # The pieces under min_visible, detected with the highest scores: ignored.
    with_pieces = annotations_as_predictions(coco, crowd_score=2.0)
    assert sum(len(s['pred_instances']) for s in with_pieces) > \
        len([a for a in coco.dataset['annotations'] if not a['iscrowd']])
    assert evaluate(cfg, with_pieces)['coco/bbox_mAP'] == 1.0
