"""Drawing of video predictions by ``tools/test.py --show/--show-dir``."""
from typing import Optional, Sequence

from mmaction.engine.hooks import VisualizationHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ClipVisualizationHook(VisualizationHook):
    """mmaction2's ``VisualizationHook`` for batches of multi-view clips.

    mmaction2's hook draws each input as one clip ``(C, T, H, W)``; a recognizer's
    inputs hold views, ``(views, C, T, H, W)`` (``FormatShape`` with ``NCTHW``), which it
    cannot draw. This one draws the first view of each sample; a sample given as one
    clip is drawn as it is. mmaction2's hook also hands ``show`` to
    ``ActionVisualizer.add_datasample``, which takes ``show_frames``: this one does.

    Args:
        enable: Whether to draw.
        interval: Draw every ``interval``-th sample.
        show: Show the frames in a window.
        out_dir: Where the frames are written (else the visualizer's backends).
        **kwargs: ``ActionVisualizer.add_datasample`` arguments.
    """

    def __init__(self, enable: bool = False, interval: int = 5000, show: bool = False,
                 out_dir: Optional[str] = None, **kwargs) -> None:
        super().__init__(enable, interval, show, out_dir, **kwargs)
        self.draw_args = {**kwargs, 'show_frames': show}

    def _draw_samples(self, batch_idx: int, data_batch: dict, data_samples: Sequence,
                      step: int = 0) -> None:
        clips = [video[0] if video.dim() == 5 else video for video in data_batch['inputs']]
        super()._draw_samples(batch_idx, {**data_batch, 'inputs': clips}, data_samples,
                              step)


__all__ = ['ClipVisualizationHook']
