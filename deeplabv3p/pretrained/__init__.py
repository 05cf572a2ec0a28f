"""Published weights: the zoo (data + loader), the registry of names, `PretrainedCfg`, the one resolver of weight
sources (`resolve_source`: a tag, a Hub repo, a saved folder, a file), reading and fitting state dicts, fetching a
tag's weights (cache, Hub, original mmseg URL), mmseg conversion, the saved-folder format, Hub push, model cards,
the builder `build_model` and `PretrainedMixin` (save_pretrained / push_to_hub as methods).

`build_model` lives here rather than in `models/`: every name it accepts (``ARCH``, ``ARCH.TAG``, a saved folder,
``hf-hub:``) is resolved through the registry, the saved-config reader and the weights loader of this package. It
takes the class to build, so that ``deeplabv3p.create_model`` (`deeplabv3p.inference.model`) can have it build
the class users get without this layer importing the one above it.
"""

from .config import PretrainedCfg
from .factory import build_model
from .fetch import WeightsUnavailableError
from .hub import push_to_hub
from .registry import get_model_config, get_pretrained_cfg, list_models, list_pretrained
from .saved import save_pretrained
from .source import Source, resolve_source

__all__ = [
    "PretrainedCfg",
    "Source",
    "WeightsUnavailableError",
    "build_model",
    "get_model_config",
    "get_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "push_to_hub",
    "resolve_source",
    "save_pretrained",
]
