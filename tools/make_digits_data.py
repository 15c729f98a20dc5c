"""Write scikit-learn's handwritten digits as an mmpretrain image folder (the digits demo).

Example::

    python tools/make_digits_data.py --out data/digits --size 32
"""
import argparse
import sys


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/digits', help='output folder')
    parser.add_argument('--size', type=int, default=32, help='side of the written images')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share of each class held out for validation')
    parser.add_argument('--seed', type=int, default=0, help='seed of the split')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # The stack is imported after parsing: --help and argument errors take no time.
    from mutualnet_mm.datasets.digits import write_digits

    try:
        counts = write_digits(args.out, args.size, args.val_fraction, args.seed)
    except ValueError as error:
        sys.exit(f'make_digits_data: {error}')
    print(f"wrote {args.out}: {counts['train']} training and {counts['val']} validation "
          f'images of {args.size}x{args.size} (train/<digit>/*.png, val/<digit>/*.png)')


if __name__ == '__main__':
    main()
