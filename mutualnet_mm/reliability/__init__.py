"""Hardening, in one place: safe checkpoint loading (the scan before unpickling and the
mmengine loader patches), the checkpoint hook that loses nothing to a kill, resume
checks, the one state-dict check, data checks, atomic writes, weights fingerprints and
result sets with their manifest."""
from .checkpoint import install_safe_loading, load_checkpoint_safely
from .checkpoint_hook import SafeCheckpointHook
from .checkpoint_meta import ResumeMetaCheckHook, check_resume_meta
from .state_dict import CheckpointMatchHook, StateDictMismatchError, check_state_dict_fits

__all__ = ['CheckpointMatchHook', 'ResumeMetaCheckHook', 'SafeCheckpointHook',
           'StateDictMismatchError', 'check_resume_meta', 'check_state_dict_fits',
           'install_safe_loading', 'load_checkpoint_safely']
