"""deeplabv3p: DeepLabV3+ semantic segmentation for PyTorch.

The mmsegmentation DeepLabV3+ model zoo with exact parity, any timm encoder, fast inference and fine-tuning.

The package is layered, each layer importing only the ones before it:
``models`` (the network) -> ``pretrained`` (zoo, weights, Hub) -> ``inference`` (predict, fast paths, export) ->
``train`` (datasets, fit, evaluate). The training layer is loaded on first use (``deeplabv3p.train``,
``deeplabv3p.SegmentationDataset``) and every other public name on first access, so ``import deeplabv3p``
stays light and importing one layer does not load the layers above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from . import train
    from .inference.export import check_onnx, export_onnx
    from .inference.model import DeepLabV3Plus, create_model
    from .inference.onnx_runtime import OnnxSegmenter
    from .inference.optimize import fold_batchnorm, optimize_for_inference
    from .inference.options import PredictOptions
    from .inference.pipeline import predict, predict_iter
    from .inference.result import SegmentationResult
    from .inference.writer import write_predictions
    from .models.config import ModelConfig
    from .pretrained.config import PretrainedCfg
    from .pretrained.fetch import WeightsUnavailableError
    from .pretrained.registry import get_model_config, get_pretrained_cfg, list_models, list_pretrained
    from .train.datasets import SegmentationDataset

# Public name -> the module that defines it. Resolved on first access, so importing one layer
# (``deeplabv3p.models``) does not load the layers above it.
_EXPORTS = {
    "DeepLabV3Plus": "deeplabv3p.inference.model",
    "ModelConfig": "deeplabv3p.models.config",
    "PretrainedCfg": "deeplabv3p.pretrained.config",
    "WeightsUnavailableError": "deeplabv3p.pretrained.fetch",
    "create_model": "deeplabv3p.inference.model",
    "get_model_config": "deeplabv3p.pretrained.registry",
    "get_pretrained_cfg": "deeplabv3p.pretrained.registry",
    "list_models": "deeplabv3p.pretrained.registry",
    "list_pretrained": "deeplabv3p.pretrained.registry",
    "SegmentationResult": "deeplabv3p.inference.result",
    "PredictOptions": "deeplabv3p.inference.options",
    "OnnxSegmenter": "deeplabv3p.inference.onnx_runtime",
    "write_predictions": "deeplabv3p.inference.writer",
    "check_onnx": "deeplabv3p.inference.export",
    "export_onnx": "deeplabv3p.inference.export",
    "fold_batchnorm": "deeplabv3p.inference.optimize",
    "optimize_for_inference": "deeplabv3p.inference.optimize",
    "predict": "deeplabv3p.inference.pipeline",
    "predict_iter": "deeplabv3p.inference.pipeline",
    "SegmentationDataset": "deeplabv3p.train.datasets",
}


def __getattr__(name: str) -> Any:
    if name == "train":
        return importlib.import_module("deeplabv3p.train")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deeplabv3p' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DeepLabV3Plus",
    "ModelConfig",
    "OnnxSegmenter",
    "PredictOptions",
    "PretrainedCfg",
    "SegmentationDataset",
    "SegmentationResult",
    "WeightsUnavailableError",
    "__version__",
    "check_onnx",
    "create_model",
    "export_onnx",
    "fold_batchnorm",
    "get_model_config",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "optimize_for_inference",
    "predict",
    "predict_iter",
    "train",
    "write_predictions",
]
