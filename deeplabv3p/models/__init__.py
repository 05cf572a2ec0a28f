"""The network: `ModelConfig`, the timm encoder wrapper, the ASPP decoder and heads, `DeepLabV3PlusNetwork`.

Built from a `ModelConfig` alone (``DeepLabV3PlusNetwork(config)``); nothing here knows about weights, the zoo,
images or training, and nothing here imports or calls the other subpackages.
"""

from .config import ModelConfig
from .decoder import Classifier, DeepLabV3PlusDecoder, FCNHead
from .encoder import Encoder
from .model import DeepLabV3PlusNetwork

__all__ = ["Classifier", "DeepLabV3PlusDecoder", "DeepLabV3PlusNetwork", "Encoder", "FCNHead", "ModelConfig"]
