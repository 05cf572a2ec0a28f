"""deeplabv3p: DeepLabV3+ semantic segmentation for PyTorch.

The mmsegmentation DeepLabV3+ model zoo with exact parity, any timm encoder, fast inference and fine-tuning.
"""

from . import train
from .config import ModelConfig, PretrainedCfg
from .data import SegmentationDataset
from .export import check_onnx, export_onnx
from .factory import create_model
from .inference import predict, predict_iter
from .model import DeepLabV3Plus
from .optimize import fold_batchnorm, optimize_for_inference
from .registry import get_model_config, get_pretrained_cfg, list_models, list_pretrained
from .result import SegmentationResult
from .version import __version__
from .weights import WeightsUnavailableError

__all__ = [
    "DeepLabV3Plus",
    "ModelConfig",
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
]
