"""A metric that sums the raw predictions, for comparing two evaluations of one model.

COCO mAP of a barely trained detector is about 0 at every configuration; these sums
change with any change of the predictions (hence of the calibrated statistics).
"""
from typing import List, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class PredictionDigest(BaseMetric):
    """Sums of the predicted scores and box coordinates, and the number of boxes."""

    default_prefix = 'digest'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_instances']
            self.results.append((pred['scores'].double().sum().item(), len(pred['scores']),
                                 pred['bboxes'].double().sum().item()))

    def compute_metrics(self, results: List[tuple]) -> dict:
        return dict(score_sum=sum(r[0] for r in results), num_boxes=sum(r[1] for r in results),
                    box_sum=sum(r[2] for r in results), num_images=len(results))
