"""Inference: image reading, mmcv-exact resizing, the whole/slide/TTA pipeline over a backend (PyTorch or
onnxruntime), `SegmentationResult`, sharded and resumable folder prediction, fast paths (`optimize_for_inference`,
``dtype="auto"``), ONNX export and INT8 quantization. Never imports the training package."""

from .backend import Backend, TorchBackend
from .export import check_onnx, export_onnx
from .onnx_runtime import OnnxSegmenter
from .optimize import fold_batchnorm, optimize_for_inference
from .options import PredictOptions
from .pipeline import predict, predict_iter
from .result import SegmentationResult
from .writer import WriteSummary, merge_manifest, write_predictions

__all__ = [
    "Backend",
    "OnnxSegmenter",
    "PredictOptions",
    "SegmentationResult",
    "TorchBackend",
    "WriteSummary",
    "check_onnx",
    "export_onnx",
    "fold_batchnorm",
    "merge_manifest",
    "optimize_for_inference",
    "predict",
    "predict_iter",
    "write_predictions",
]
