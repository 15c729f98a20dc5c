"""Training machinery: cohorts, batch rescaling, the mutual step, BN calibration, the
train loops."""
from .calibration import calibrate_bn
from .distill import Distiller, FeatureDistiller, LogitDistiller, RPNOutputDistiller
from .loops import MutualEpochBasedTrainLoop, MutualIterBasedTrainLoop
from .mutual_step import MutualTrainStep, NonFiniteLossError
from .rescale import ClsBatchRescaler, DetBatchRescaler, VideoBatchRescaler
from .subnet import CohortSampler, SubnetConfig
from .visualization import ClipVisualizationHook

__all__ = [
    'ClipVisualizationHook', 'ClsBatchRescaler', 'CohortSampler', 'DetBatchRescaler',
    'Distiller', 'FeatureDistiller', 'LogitDistiller', 'RPNOutputDistiller',
    'MutualEpochBasedTrainLoop', 'MutualIterBasedTrainLoop', 'MutualTrainStep',
    'NonFiniteLossError', 'SubnetConfig', 'VideoBatchRescaler', 'calibrate_bn',
]
