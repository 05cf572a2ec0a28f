"""The network: `ModelConfig`, the timm encoder wrapper, the ASPP decoder and heads, `DeepLabV3PlusNetwork`.

Built from a `ModelConfig` alone (``DeepLabV3PlusNetwork(config)``); nothing here knows about weights, the zoo,
images or training, and nothing here imports or calls the other subpackages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is what runs (loaded on first access, see deeplabv3p.lazy)
    from .config import ModelConfig
    from .decoder import Classifier, DeepLabV3PlusDecoder, FCNHead
    from .encoder import Encoder
    from .model import DeepLabV3PlusNetwork

_EXPORTS = {
    "ModelConfig": "config",
    "Classifier": "decoder",
    "DeepLabV3PlusDecoder": "decoder",
    "FCNHead": "decoder",
    "Encoder": "encoder",
    "DeepLabV3PlusNetwork": "model",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
