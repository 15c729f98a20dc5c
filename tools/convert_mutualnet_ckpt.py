"""Convert an ImageNet checkpoint (reference MutualNet, torchvision MobileNetV2) for a backbone.

    python tools/convert_mutualnet_ckpt.py SRC DST [--arch ARCH]

DST is an mmengine checkpoint (``{'state_dict': ..., 'meta': ...}``) that
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` loads into the backbone printed at the end.
The source is read with ``weights_only=True``.
"""
import argparse
import os
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='source checkpoint')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--arch', help='source layout, a key of '
                        'mutualnet_mm.models.convert.ARCHS (default: detected from the keys)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The stack is imported after parsing: --help and argument errors take no time.
    import torch

    from mutualnet_mm.models import convert
    from mutualnet_mm.reliability.checkpoint import load_checkpoint_safely

    if args.arch is not None and args.arch not in convert.ARCHS:
        parser.error(f'argument --arch: invalid choice: {args.arch!r} (choose from '
                     f'{", ".join(sorted(convert.ARCHS))})')
    state_dict = convert.unwrap_state_dict(load_checkpoint_safely(args.src))
    arch = args.arch or convert.detect_arch(state_dict)
    converted, dropped = convert.convert_reference_state_dict(state_dict, arch)
    keeps_stats = arch in convert.KEEPS_RUNNING_STATS
    classifier = [key for key in dropped if key.startswith('classifier.')]
    stats = [key for key in dropped if key not in classifier]
    meta = dict(source=os.path.abspath(args.src), arch=arch, backbone=convert.ARCHS[arch],
                dropped_classifier=classifier, dropped_running_stats=len(stats),
                bn_running_stats='source' if keeps_stats else 'reset (mean 0, var 1)')
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=converted, meta=meta), args.dst)

    print(f'{args.src}: {arch} layout{"" if args.arch else " (detected)"}, '
          f'{len(converted)} tensors written to {args.dst}')
    print(f'backbone: {convert.ARCHS[arch]}')
    print(f'dropped: classifier ({", ".join(classifier) or "none"}; the backbone has none), '
          f'{len(stats)} running statistics')
    if keeps_stats:
        print('BN running statistics: kept from the source (valid at full width); '
              'recalibrate them for other widths and resolutions.')
    else:
        print('BN running statistics: the source has none usable, they are set to mean 0 / '
              'var 1. Recalibrate them before evaluating (the BN calibration does it).')
    return 0


if __name__ == '__main__':
    sys.exit(main())
