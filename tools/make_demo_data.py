"""Write the demo detection / instance segmentation data (COCO format) to a folder.

Example::

    python tools/make_demo_data.py --out data/coco_shapes --num-train 400 --size 160
"""
import argparse
import sys


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/coco_shapes', help='output folder')
    parser.add_argument('--num-train', type=int, default=400, help='training images')
    parser.add_argument('--num-val', type=int, default=100, help='validation images')
    parser.add_argument('--size', type=int, default=160, help='side of the square images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def show_progress(split: str, done: int, total: int) -> None:
    if done % max(1, total // 20) == 0 or done == total:
        end = '\n' if done == total else ''
        print(f'\r{split}: {done}/{total} images', end=end, file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    # The stack is imported after parsing: --help and argument errors take no time.
    from mutualnet_mm.datasets.coco_shapes import generate_coco_shapes

    try:
        summary = generate_coco_shapes(args.out, num_train=args.num_train,
                                       num_val=args.num_val, image_size=args.size,
                                       seed=args.seed, progress=show_progress)
    except ValueError as error:
        sys.exit(f'make_demo_data: {error}')
    state = 'wrote' if summary['generated'] else 'already up to date:'
    print(f"{state} {summary['root']}: {summary['num_train']} train images "
          f"({summary['train_objects']} objects), {summary['num_val']} val images "
          f"({summary['val_objects']} objects), {args.size}x{args.size}, "
          f"{len(summary['classes'])} classes")


if __name__ == '__main__':
    main()
