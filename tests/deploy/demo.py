"""The demo Mask R-CNN config at 64 px on a tiny generated dataset (shared by tests)."""
import os.path as osp

from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'maskrcnn_mutual_r18_shapes.py')
IMAGE_SIZE = 64
# The start of a script run in a process whose import path holds the environment's
# site-packages only (spec['site']): it fails if mutualnet_mm is importable there.
STOCK_PRELUDE = r'''
import json, sys
spec = json.loads(sys.argv[1])
sys.path.extend(spec['site'])
try:
    import mutualnet_mm  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit('mutualnet_mm is importable in the stock process')
'''


def tiny_demo_config(data_root: str) -> Config:
    """The demo config on ``data_root``: 64 px images, batches of 2, no worker processes.

    The data is ``generate_coco_shapes(data_root, num_train=4, num_val=2, image_size=64)``.
    """
    cfg = Config.fromfile(DEMO_CONFIG)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = data_root
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = osp.join(data_root, 'annotations', 'instances_val.json')
    pipelines = [cfg.train_pipeline, cfg.test_pipeline] + [
        cfg[key].dataset.pipeline for key in ('train_dataloader', 'val_dataloader',
                                              'test_dataloader')]
    for pipeline in pipelines:
        for transform in pipeline:
            if transform.type == 'Resize':
                transform.scale = (IMAGE_SIZE, IMAGE_SIZE)
    cfg.work_dir = osp.join(data_root, 'work_dir')
    return cfg
