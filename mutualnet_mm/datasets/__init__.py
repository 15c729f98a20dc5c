"""Generated demo datasets: the project makes its own small data, no downloads."""
from .coco_shapes import COCO_SHAPES_CLASSES, generate_coco_shapes

__all__ = ['COCO_SHAPES_CLASSES', 'generate_coco_shapes']
