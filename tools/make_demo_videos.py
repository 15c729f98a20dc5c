"""Write the demo action-recognition data (motion clips, VideoDataset lists) to a folder.

Example::

    python tools/make_demo_videos.py --out data/motion_clips --num-train 1200 --size 64
"""
import argparse
import sys


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/motion_clips', help='output folder')
    parser.add_argument('--num-train', type=int, default=1200, help='training clips')
    parser.add_argument('--num-val', type=int, default=120, help='validation clips')
    parser.add_argument('--size', type=int, default=64, help='side of the square frames')
    parser.add_argument('--frames', type=int, default=16, help='frames per clip')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def show_progress(split: str, done: int, total: int) -> None:
    if done % max(1, total // 20) == 0 or done == total:
        end = '\n' if done == total else ''
        print(f'\r{split}: {done}/{total} clips', end=end, file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    # The stack is imported after parsing: --help and argument errors take no time.
    from mutualnet_mm.datasets.motion_clips import generate_motion_clips

    try:
        summary = generate_motion_clips(args.out, num_train=args.num_train,
                                        num_val=args.num_val, size=args.size,
                                        frames=args.frames, seed=args.seed,
                                        progress=show_progress)
    except ValueError as error:
        sys.exit(f'make_demo_videos: {error}')
    state = 'wrote' if summary['generated'] else 'already up to date:'
    print(f"{state} {summary['root']}: {summary['num_train']} train clips, "
          f"{summary['num_val']} val clips, {summary['frames']} frames of "
          f"{summary['size']}x{summary['size']}, {len(summary['classes'])} classes")


if __name__ == '__main__':
    main()
