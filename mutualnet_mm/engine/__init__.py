"""Training machinery: cohorts, batch rescaling, the mutual step, BN calibration, the
train loops, safe checkpoints."""
from .calibration import calibrate_bn
from .checkpoint import install_safe_loading, load_checkpoint_safely
from .checkpoint_hook import SafeCheckpointHook
from .checkpoint_meta import ResumeMetaCheckHook, check_resume_meta
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
    'NonFiniteLossError', 'ResumeMetaCheckHook',
    'SafeCheckpointHook',
    'SubnetConfig', 'VideoBatchRescaler', 'install_safe_loading', 'calibrate_bn',
    'check_resume_meta', 'load_checkpoint_safely',
]
