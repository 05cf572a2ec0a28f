"""Published weights: the zoo (data + loader), the registry of names, `PretrainedCfg`, the one resolver of weight
sources (`resolve_source`: a tag, a Hub repo, a saved folder, a file), reading and fitting state dicts, fetching a
tag's weights (cache, Hub, original mmseg URL), mmseg conversion, the saved-folder format, Hub push, model cards,
the builder `build_model` and `PretrainedMixin` (save_pretrained / push_to_hub as methods).

`build_model` lives here rather than in `models/`: every name it accepts (``ARCH``, ``ARCH.TAG``, a saved folder,
``hf-hub:``) is resolved through the registry, the saved-config reader and the weights loader of this package. It
takes the class to build, so that ``deeplabv3p.create_model`` (`deeplabv3p.inference.model`) can have it build
the class users get without this layer importing the one above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is what runs (loaded on first access, see deeplabv3p.lazy)
    from .config import PretrainedCfg
    from .factory import build_model
    from .fetch import WeightsUnavailableError
    from .hub import push_to_hub
    from .registry import get_model_config, get_pretrained_cfg, list_models, list_pretrained
    from .saved import save_pretrained
    from .source import Source, resolve_source

_EXPORTS = {
    "PretrainedCfg": "config",
    "build_model": "factory",
    "WeightsUnavailableError": "fetch",
    "push_to_hub": "hub",
    "get_model_config": "registry",
    "get_pretrained_cfg": "registry",
    "list_models": "registry",
    "list_pretrained": "registry",
    "save_pretrained": "saved",
    "Source": "source",
    "resolve_source": "source",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
