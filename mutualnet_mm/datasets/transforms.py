"""An image loader whose failure on a corrupt image names the image and the way out."""
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS


class UnreadableImageError(ValueError):
    """An image of the dataset cannot be read or decoded."""


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that raises :class:`UnreadableImageError` on a bad image.

    mmcv fails on an undecodable image with an ``AssertionError`` (skipped under
    ``python -O``, which then fails on ``None.shape``) and on an empty file with OpenCV's
    ``!buf.empty()`` error, which does not name the file. This error names the image, its
    id and the check that lists every unreadable image before training. Used in training
    pipelines only: inference tools look for ``LoadImageFromFile`` in the test pipeline.
    """

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image of ``results['img_path']``; raise naming it if that fails."""
        try:
            return super().transform(results)
        except Exception as error:
            raise UnreadableImageError(
                f'image {results.get("img_path")!r} (id {results.get("img_id")!r}) cannot be '
                f'read or decoded ({type(error).__name__}: {str(error).strip()}); it is '
                f'truncated or corrupt. `tools/train.py CONFIG --check-data all` lists every '
                f'unreadable image of the config before training') from None


__all__ = ['CheckedLoadImageFromFile', 'UnreadableImageError']
