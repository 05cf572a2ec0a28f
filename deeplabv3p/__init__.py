"""deeplabv3p: DeepLabV3+ semantic segmentation for PyTorch.

The mmsegmentation DeepLabV3+ model zoo with exact parity, any timm encoder, fast inference and fine-tuning.

The package is layered, each layer importing only the ones before it:
``models`` (the network) -> ``pretrained`` (zoo, weights, Hub) -> ``inference`` (predict, fast paths, export) ->
``train`` (datasets, fit, evaluate) -> ``cli``. The top level holds what a timm or smp user reaches for; the rest
lives in its subpackage (``deeplabv3p.deploy.export``, ``deeplabv3p.train.fit``). Every name here is
loaded on first access, so ``import deeplabv3p`` (and the command line's start) stays light and importing one
layer does not load the layers above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .lazy import lazy_exports
from .version import __version__

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is what runs (tests/test_layering.py keeps them equal)
    from .inference.model import DeepLabV3Plus, create_model
    from .inference.options import PredictOptions
    from .inference.pipeline import predict, predict_iter
    from .inference.result import SegmentationResult
    from .models.config import ModelConfig
    from .pretrained.config import PretrainedCfg
    from .pretrained.fetch import WeightsUnavailableError
    from .pretrained.registry import get_pretrained_cfg, list_models, list_pretrained
    from .train.datasets import SegmentationDataset

# The module that defines each public name (relative to this package).
_EXPORTS = {
    "DeepLabV3Plus": "inference.model",
    "ModelConfig": "models.config",
    "PretrainedCfg": "pretrained.config",
    "WeightsUnavailableError": "pretrained.fetch",
    "create_model": "inference.model",
    "get_pretrained_cfg": "pretrained.registry",
    "list_models": "pretrained.registry",
    "list_pretrained": "pretrained.registry",
    "PredictOptions": "inference.options",
    "SegmentationResult": "inference.result",
    "predict": "inference.pipeline",
    "predict_iter": "inference.pipeline",
    "SegmentationDataset": "train.datasets",
}
_SUBPACKAGES = ("models", "pretrained", "inference", "train", "cli")
_load = lazy_exports(__name__, _EXPORTS)

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # ``deeplabv3p.train.fit`` after a plain ``import deeplabv3p``
        return importlib.import_module(f".{name}", __name__)
    return _load(name)


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBPACKAGES})
