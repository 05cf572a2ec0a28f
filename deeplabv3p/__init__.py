"""deeplabv3p: DeepLabV3+ semantic segmentation for PyTorch.

The mmsegmentation DeepLabV3+ model zoo with exact parity, any timm encoder, fast inference and fine-tuning.
"""

from .config import ModelConfig, PretrainedCfg
from .factory import create_model
from .inference import predict, predict_iter
from .model import DeepLabV3Plus
from .registry import get_model_config, get_pretrained_cfg, list_models, list_pretrained
from .result import SegmentationResult
from .version import __version__
from .weights import WeightsUnavailableError

__all__ = [
    "DeepLabV3Plus",
    "ModelConfig",
    "PretrainedCfg",
    "SegmentationResult",
    "WeightsUnavailableError",
    "__version__",
    "create_model",
    "get_model_config",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "predict",
    "predict_iter",
]
