"""Demo action-recognition data: short clips whose class is a motion.

One shape (random kind, colour, size, rotation) moves over a static textured background.
The class says only how it moves (:data:`MOTION_CLASSES`): left, right, up, down, grow or
shrink. Start positions and sizes are random so that any single frame could belong to any
class; only the change over time tells them apart. Clips are H.264 ``.mp4`` files that
decord and PyAV both read, listed for mmaction2's stock ``VideoDataset``.

Horizontal or vertical flips change the class (left <-> right, up <-> down): do not use
``Flip`` in pipelines for this data.

Layout written under ``root``::

    train/000000.mp4 ...   val/000000.mp4 ...
    train_list.txt         val_list.txt        (lines "train/000000.mp4 3")
    meta.json              (the generation parameters; same parameters -> nothing to do)

Every clip depends only on ``(seed, split, index)``: the same seed gives identical files,
and clip ``i`` does not change when the split grows. Labels cycle through the classes, so
the splits are balanced.
"""
import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import av
import cv2
import numpy as np

MOTION_CLASSES = ('move_left', 'move_right', 'move_up', 'move_down', 'grow', 'shrink')

_FORMAT_VERSION = 1
_SPLITS = ('train', 'val')
_FPS = 8
_MIN_SIZE, _MAX_SIZE = 32, 512
_MIN_FRAMES, _MAX_FRAMES = 4, 256
_DIRECTIONS = {'move_left': (-1.0, 0.0), 'move_right': (1.0, 0.0),
               'move_up': (0.0, -1.0), 'move_down': (0.0, 1.0)}
_RADIUS = (0.1, 0.18)  # shape circumradius at mid-clip, fraction of the side
_TRAVEL = (0.3, 0.45)  # distance a moving shape covers, fraction of the side
_GROWTH = (2.0, 3.0)  # ratio of the last to the first radius of a growing shape
_MIN_CONTRAST = 80.0  # RGB distance between the shape and the mean background colour
_SUBPIXEL_BITS = 4  # cv2 fixed-point drawing: positions move smoothly between pixels
_ENCODER_OPTIONS = {'crf': '12', 'preset': 'medium', 'bframes': '0'}


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    radii = np.tile([1.0, inner], points)
    angles = np.linspace(0.0, 2.0 * np.pi, 2 * points, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]


def _regular(corners: int) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, corners, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


# Outlines with circumradius 1 around the origin (the circle is a 48-gon).
_OUTLINES = (_regular(48), _regular(4), _regular(3), _star())


def _check_arguments(num_train: int, num_val: int, size: int, frames: int, seed: int) -> None:
    def is_int(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if not is_int(value) or value < 1:
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if not is_int(size) or not _MIN_SIZE <= size <= _MAX_SIZE or size % 2:
        raise ValueError(f'size must be an even integer in [{_MIN_SIZE}, {_MAX_SIZE}] '
                         f'(H.264 needs even sides), got {size!r}')
    if not is_int(frames) or not _MIN_FRAMES <= frames <= _MAX_FRAMES:
        raise ValueError(f'frames must be an integer in [{_MIN_FRAMES}, {_MAX_FRAMES}], '
                         f'got {frames!r}')
    if not is_int(seed) or seed < 0:
        raise ValueError(f'seed must be an integer >= 0, got {seed!r}')


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A static texture: smooth colour blobs plus fine grain, float RGB in [0, 255]."""
    coarse = rng.uniform(40.0, 215.0, size=(4, 4, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 10.0, size=(size, size, 3)).astype(np.float32)
    return np.clip(smooth + grain, 0.0, 255.0)


def _shape_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        colour = rng.uniform(0.0, 255.0, size=3)
        if np.linalg.norm(colour - mean) >= _MIN_CONTRAST:
            return colour
    return np.where(mean > 127.5, 0.0, 255.0)  # black or white, far from the mean


def _trajectory(rng: np.random.Generator, motion: str, size: int, frames: int) -> tuple:
    """Centres ``(frames, 2)`` and radii ``(frames,)`` in pixels for a motion class."""
    progress = np.linspace(-0.5, 0.5, frames)  # clip time, centred on the middle frame
    radius = rng.uniform(*_RADIUS) * size
    if motion in _DIRECTIONS:
        travel = rng.uniform(*_TRAVEL) * size
        step = np.asarray(_DIRECTIONS[motion]) * travel
        margin = radius + np.abs(step) / 2
        middle = rng.uniform(margin, size - margin)
        return middle + progress[:, None] * step, np.full(frames, radius)
    growth = rng.uniform(*_GROWTH) ** (1.0 if motion == 'grow' else -1.0)
    radii = radius * growth ** progress
    margin = radii.max()
    return rng.uniform(margin, size - margin, size=2)[None].repeat(frames, 0), radii


def _render_clip(rng: np.random.Generator, label: int, size: int, frames: int) -> np.ndarray:
    """The frames of one clip, ``(frames, size, size, 3)`` uint8 RGB."""
    background = _background(rng, size)
    colour = _shape_colour(rng, background)
    outline = _OUTLINES[rng.integers(len(_OUTLINES))]
    angle = rng.uniform(0.0, 2.0 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outline = outline @ rotation.T
    centres, radii = _trajectory(rng, MOTION_CLASSES[label], size, frames)
    scale = 1 << _SUBPIXEL_BITS
    clip = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        mask = np.zeros((size, size), np.uint8)
        points = np.round((outline * radii[t] + centres[t]) * scale).astype(np.int32)
        cv2.fillPoly(mask, [points], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
        alpha = mask[..., None].astype(np.float32) / 255.0
        clip[t] = np.round(background * (1.0 - alpha) + colour * alpha).astype(np.uint8)
    return clip


def write_video(path: Union[str, Path], frames: np.ndarray, fps: int = _FPS) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as an H.264 ``.mp4`` (one thread)."""
    with av.open(str(path), mode='w') as container:
        stream = container.add_stream('libx264', rate=fps, options=_ENCODER_OPTIONS)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        stream.codec_context.thread_count = 1
        stream.codec_context.time_base = Fraction(1, fps)
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')))
        container.mux(stream.encode())


def _write_split(root: Path, split_index: int, num_clips: int, params: dict,
                 progress: Optional[Callable[[str, int, int], None]]) -> None:
    split = _SPLITS[split_index]
    (root / split).mkdir(parents=True)
    lines = []
    for index in range(num_clips):
        rng = np.random.default_rng([params['seed'], split_index, index])
        label = index % len(MOTION_CLASSES)
        clip = _render_clip(rng, label, params['size'], params['frames'])
        file_name = f'{split}/{index:06d}.mp4'
        write_video(root / file_name, clip)
        lines.append(f'{file_name} {label}\n')
        if progress is not None:
            progress(split, index + 1, num_clips)
    (root / f'{split}_list.txt').write_text(''.join(lines))


def generate_motion_clips(root: Union[str, Path],
                          num_train: int = 1200,
                          num_val: int = 120,
                          size: int = 64,
                          frames: int = 16,
                          seed: int = 0,
                          progress: Optional[Callable[[str, int, int], None]] = None) -> Dict:
    """Write the motion clips under ``root`` unless they are already there.

    Args:
        root: Output folder. It must be absent, empty, or an earlier output of this
            function (recognised by its ``meta.json``, and then replaced).
        num_train: Number of training clips.
        num_val: Number of validation clips.
        size: Side of the square frames in pixels (even, 32 to 512).
        frames: Frames per clip (4 to 256).
        seed: Seed; the same seed and parameters give identical clips.
        progress: Called as ``progress(split, done, total)`` after each clip.

    Returns:
        Summary: ``root``, clip counts, ``size``, ``frames``, ``classes``, and
        ``generated`` (False when the data was already there).
    """
    _check_arguments(num_train, num_val, size, frames, seed)
    root = Path(root)
    params = dict(format_version=_FORMAT_VERSION, num_train=int(num_train),
                  num_val=int(num_val), size=int(size), frames=int(frames), seed=int(seed),
                  fps=_FPS, encoder=dict(codec='libx264', **_ENCODER_OPTIONS))
    meta_path = root / 'meta.json'
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get('params') == params and meta.get('summary') is not None:
            return dict(meta['summary'], generated=False)
        for split in _SPLITS:
            shutil.rmtree(root / split, ignore_errors=True)
            (root / f'{split}_list.txt').unlink(missing_ok=True)
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f'root {str(root)!r} is not empty and holds no meta.json of this '
                         'generator; give an empty or new folder')
    root.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(dict(params=params, summary=None)))  # marks it as ours
    for split_index, num_clips in enumerate((num_train, num_val)):
        _write_split(root, split_index, num_clips, params, progress)
    summary = dict(root=str(root), num_train=int(num_train), num_val=int(num_val),
                   size=int(size), frames=int(frames), classes=list(MOTION_CLASSES))
    meta_path.write_text(json.dumps(dict(params=params, summary=summary), indent=1))
    return dict(summary, generated=True)
