"""Cost of Mask R-CNN R50-FPN per part at 4 widths: backbone-only vs. whole-detector slimming.

mmdet's stock ``mask-rcnn_r50_fpn`` model (random weights) made slimmable by
``slim_detector_config`` in ``'backbone'`` mode (the backbone slims; FPN and heads stay
stock) and in ``'detector'`` mode (FPN, RPN head, RoI extractors, box and mask heads slim
too), counted by ``count_cost`` on one 800x1216 image at the full scale: an image the
stock test pipeline (Resize to 1333x800, keep ratio) leaves as it is, padded to 32 already.

GFLOPs here are 10^9 multiply-adds, as in the project's tables. The RoI heads' cost
depends on how many boxes reach them: the box head runs on the RPN's proposals (at most
``test_cfg.rpn.max_per_img`` = 1000 in the stock config) and the mask head on the final
detections; with random weights ``test_cfg.rcnn.score_thr`` is set to 0 (so the mask head
always gets ``max_per_img`` = 100 detections). The counts are printed per configuration.
It prints each mode's cost at the minimum width relative to full width (``--target 0.125``
also prints whether whole-detector mode is within 1/8).

    python benchmarks/detector_cost.py
"""
import argparse
import time
from typing import Dict, List

import torch
from common import (
    add_grid_args,
    add_target_arg,
    add_threads_arg,
    build_model,
    describe,
    markdown_table,
    print_footer,
    print_header,
    target_note,
)
from mmdet.structures import DetDataSample
from mmengine.config import Config

from mutualnet_mm.evaluation import count_cost
from mutualnet_mm.models.detector_slimming import SLIMMING_MODES, slim_detector_config
from mutualnet_mm.ops import set_width

BASE_MODEL = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
PARTS = ('backbone', 'neck', 'rpn_head', 'roi_head')
ROI_PARTS = ('bbox_head', 'mask_head')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_grid_args(parser, scales=False)
    parser.add_argument('--height', type=int, default=800)
    parser.add_argument('--width', type=int, default=1216)
    add_threads_arg(parser)
    add_target_arg(parser, what="whole-detector mode's cost at the minimum width / full width")
    return parser.parse_args()


def stock_config() -> Config:
    """mmdet's Mask R-CNN R50-FPN model, its RoI heads keeping every detection."""
    cfg = Config.fromstring(f'_base_ = {BASE_MODEL!r}\ndefault_scope = "mmdet"\n', '.py')
    cfg.model.backbone.init_cfg = None  # random weights, nothing to download
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    return cfg


def count(model: torch.nn.Module, image: torch.Tensor, sample: DetDataSample) -> dict:
    """GFLOPs per part (and per RoI head), and the boxes the RoI heads processed."""
    boxes: Dict[str, int] = {}
    handles = [getattr(model.roi_head, f'{kind}_roi_extractor').register_forward_hook(
        lambda _m, _i, out, kind=kind: boxes.__setitem__(kind, out.shape[0]))
        for kind in ('bbox', 'mask')]
    roi_parts: Dict[str, dict] = {}
    try:
        parts = count_cost(model, lambda: roi_parts.update(count_cost(
            model.roi_head, lambda: model(image, [sample], mode='predict'))))
    finally:
        for handle in handles:
            handle.remove()
    row = {part: parts.get(part, {}).get('gmacs', 0.0) for part in PARTS}
    row.update({f'roi.{part}': roi_parts.get(part, {}).get('gmacs', 0.0)
                for part in ROI_PARTS})
    row['total'] = parts['total']['gmacs']
    row['mparams'] = parts['total']['mparams']
    row['proposals'] = boxes.get('bbox', 0)
    row['mask_rois'] = boxes.get('mask', 0)
    return row


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Cost of Mask R-CNN R50-FPN per part: backbone-only vs. whole-detector', args)
    cfg = stock_config()
    torch.manual_seed(0)
    image = torch.randn(1, 3, args.height, args.width)
    shape = (args.height, args.width)
    sample = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                         batch_input_shape=shape, scale_factor=(1.0, 1.0)))
    summary: List[dict] = []
    for mode in SLIMMING_MODES:
        model = build_model(cfg, slim_detector_config(cfg.model.to_dict(), mode)).eval()
        print(f'{mode} mode: {describe(model)}')
        rows = []
        with torch.no_grad():
            for width in args.widths:
                set_width(model, width)
                rows.append(dict(width=width, **count(model, image, sample)))
                print(f'{mode} w={width}: {rows[-1]["total"]:.1f} GFLOPs', flush=True)
        full = next(row['total'] for row in rows if row['width'] == max(args.widths))
        for row in rows:
            row['ratio'] = row['total'] / full
        print(f'\n{mode} mode: GFLOPs (10^9 multiply-adds) per part, one '
              f'{args.height}x{args.width} image; roi.* split roi_head:')
        print(markdown_table(rows, ['width', *PARTS, *(f'roi.{p}' for p in ROI_PARTS),
                                    'total', 'ratio', 'mparams', 'proposals',
                                    'mask_rois']))
        print()
        smallest = min(rows, key=lambda row: row['width'])
        summary.append(dict(mode=mode, width=smallest['width'], ratio=smallest['ratio'],
                            fraction=f"1/{1 / smallest['ratio']:.1f}"))
    print('minimum width vs. full width (total GFLOPs):')
    print(markdown_table(summary))
    detector = next(row for row in summary if row['mode'] == 'detector')
    print(f'\nwhole-detector mode at w={detector["width"]}: {detector["ratio"]:.3f} of full '
          'width' + target_note([detector['ratio']], args.target))
    print_footer(started)


if __name__ == '__main__':
    main()
