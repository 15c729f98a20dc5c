"""Deployment: export a configuration as a stock model, and budget-driven inference."""
from ..evaluation.results import resolve_config
from .adaptive import build_adaptive_model, calibration_loader, load_adaptive_weights
from .bn_stats import bn_state, calibrate_bn_stats, load_bn_state, load_bn_stats, save_bn_stats
from .export import build_stock_model, export_config_and_weights, export_subnet, save_export
from .inferencer import AdaptiveInferencer, InferenceResult
from .onnx_export import export_backbone_neck_onnx, onnx_difference
from .stock_model import stock_model_config, stock_runtime_config

__all__ = [
    'AdaptiveInferencer', 'InferenceResult', 'bn_state', 'build_adaptive_model',
    'build_stock_model', 'calibrate_bn_stats', 'calibration_loader', 'export_backbone_neck_onnx',
    'export_config_and_weights', 'export_subnet', 'load_adaptive_weights', 'load_bn_state',
    'load_bn_stats', 'onnx_difference', 'resolve_config', 'save_bn_stats', 'save_export',
    'stock_model_config', 'stock_runtime_config',
]
