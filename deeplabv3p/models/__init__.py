"""The network: `ModelConfig`, the timm encoder wrapper, the ASPP decoder and heads, `DeepLabV3Plus`.

Built from a `ModelConfig` alone (``DeepLabV3Plus(config)``); nothing here knows about weights, the zoo, images or
training, and nothing here imports the other subpackages at module level.
"""

from .config import ModelConfig
from .decoder import Classifier, DeepLabV3PlusDecoder, FCNHead
from .encoder import Encoder
from .model import DeepLabV3Plus

__all__ = ["Classifier", "DeepLabV3Plus", "DeepLabV3PlusDecoder", "Encoder", "FCNHead", "ModelConfig"]
