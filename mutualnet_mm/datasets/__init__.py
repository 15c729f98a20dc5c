"""Demo datasets: the project makes its own small data (generated, or tiled from the real
photographs an installed package ships), no downloads."""
from .coco_shapes import COCO_SHAPES_CLASSES, generate_coco_shapes
from .digits import DIGIT_CLASSES, write_digits
from .motion_clips import MOTION_CLASSES, generate_motion_clips
from .transforms import CheckedLoadImageFromFile, UnreadableImageError
from .trees import TREE_CLASSES, write_trees_coco

__all__ = ['COCO_SHAPES_CLASSES', 'DIGIT_CLASSES', 'MOTION_CLASSES', 'TREE_CLASSES',
           'CheckedLoadImageFromFile', 'UnreadableImageError', 'generate_coco_shapes',
           'generate_motion_clips', 'write_digits', 'write_trees_coco']
