"""Inference: image reading, mmcv-exact resizing, the whole/slide/TTA pipeline, `SegmentationResult`, fast paths
(`optimize_for_inference`) and ONNX export. Never imports the training package."""

from .export import check_onnx, export_onnx
from .optimize import fold_batchnorm, optimize_for_inference
from .options import PredictOptions
from .pipeline import predict, predict_iter
from .result import SegmentationResult

__all__ = [
    "PredictOptions",
    "SegmentationResult",
    "check_onnx",
    "export_onnx",
    "fold_batchnorm",
    "optimize_for_inference",
    "predict",
    "predict_iter",
]
