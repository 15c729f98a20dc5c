"""Tile deepforest's NEON aerial photographs of tree crowns into COCO detection data.

Needs the deepforest package's files (never imported): `pip install --no-deps
deepforest==2.1.0` (tools/setup_env.sh installs it). Prints the counts per split and the
distribution of the crown boxes' sizes, which the anchors of
configs/demo/retinanet_mutual_r18_trees.py are sized for.

Example::

    python tools/make_trees_data.py --out data/trees
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/trees', help='output folder')
    parser.add_argument('--tile-size', type=int, default=400, help='tile side in pixels')
    parser.add_argument('--overlap', type=int, default=100,
                        help='least overlap of neighbouring training tiles, in pixels')
    parser.add_argument('--min-visible', type=float, default=0.5,
                        help='smallest fraction of a box inside a tile for it to be kept')
    parser.add_argument('--empty-tiles', choices=('keep', 'drop'), default='keep',
                        help='tiles without a kept box: keep them (negatives) or drop them')
    return parser.parse_args()


def box_size_report(annotation_file: Path) -> str:
    """Percentiles of the kept boxes' sides, square-root areas and aspect ratios."""
    content = json.loads(annotation_file.read_text())
    boxes = np.array([a['bbox'] for a in content['annotations'] if not a['iscrowd']],
                     np.float64).reshape(-1, 4)
    per_image = np.bincount([a['image_id'] for a in content['annotations']
                             if not a['iscrowd']], minlength=len(content['images']) + 1)[1:]
    if len(boxes) == 0:
        return '  no boxes'
    width, height = boxes[:, 2], boxes[:, 3]
    quantiles = (0, 5, 25, 50, 75, 95, 100)
    lines = ['  percentile ' + ' '.join(f'{q:>6}' for q in quantiles)]
    for name, values in (('width px', width), ('height px', height),
                         ('sqrt(area)', np.sqrt(width * height)),
                         ('h / w', height / width)):
        lines.append(f'  {name:<10} ' + ' '.join(f'{v:6.2f}' for v in
                                                 np.percentile(values, quantiles)))
    lines.append(f'  boxes per tile: mean {per_image.mean():.1f}, max {per_image.max()}')
    return '\n'.join(lines)


def main() -> None:
    args = parse_args()
    # The stack is imported after parsing: --help and argument errors take no time.
    from mutualnet_mm.datasets.trees import SPLITS, write_trees_coco

    try:
        summary = write_trees_coco(args.out, tile_size=args.tile_size, overlap=args.overlap,
                                   min_visible=args.min_visible,
                                   empty_tiles=args.empty_tiles)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
        sys.exit(f'make_trees_data: {error}')
    state = 'wrote' if summary['generated'] else 'already up to date:'
    print(f"{state} {summary['root']} from {summary['source']} "
          f"(deepforest {summary['deepforest_version']})")
    for split in SPLITS:
        counts = summary[split]
        print(f"{split}: {counts['photos']} photographs, {counts['source_boxes']} crowns -> "
              f"{counts['tiles']} tiles of {args.tile_size} px "
              f"({counts['empty_tiles']} without a kept crown, "
              f"{counts['dropped_empty_tiles']} of them dropped), {counts['boxes']} boxes "
              f"({counts['clipped_boxes']} clipped at a tile border), "
              f"{counts['ignored_fragments']} pieces under {args.min_visible:g} of a crown "
              f"marked ignored (iscrowd), {counts['left_out_slivers']} thinner pieces left out")
        print(box_size_report(Path(args.out) / 'annotations' / f'instances_{split}.json'))


if __name__ == '__main__':
    main()
