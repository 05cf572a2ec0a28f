"""Published weights: the zoo (data + loader), the registry of names, `PretrainedCfg`, the one weights-loading path
(local file, Hub, original mmseg URL), mmseg conversion, Hub save/load/push, model cards, and `create_model`.

`create_model` lives here rather than in `models/`: every name it accepts (``ARCH``, ``ARCH.TAG``, a saved folder,
``hf-hub:``) is resolved through the registry, the saved-config reader and the weights loader of this package.
"""

from .config import PretrainedCfg
from .factory import create_model
from .hub import push_to_hub, save_pretrained
from .registry import get_model_config, get_pretrained_cfg, list_models, list_pretrained
from .weights import WeightsUnavailableError

__all__ = [
    "PretrainedCfg",
    "WeightsUnavailableError",
    "create_model",
    "get_model_config",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "push_to_hub",
    "save_pretrained",
]
