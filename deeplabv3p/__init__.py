"""deeplabv3p: DeepLabV3+ semantic segmentation for PyTorch.

The mmsegmentation DeepLabV3+ model zoo with exact parity, any timm encoder, fast inference and fine-tuning.

The package is layered, each layer importing only the ones before it:
``models`` (the network) -> ``pretrained`` (zoo, weights, Hub) -> ``inference`` (predict, fast paths, export) ->
``train`` (datasets, fit, evaluate) -> ``cli``. The top level holds what a timm or smp user reaches for; the rest
lives in its subpackage (``deeplabv3p.inference.export_onnx``, ``deeplabv3p.train.fit``). Every name here is
loaded on first access, so ``import deeplabv3p`` (and the command line's start) stays light and importing one
layer does not load the layers above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

# The module that defines each public name.
_EXPORTS = {
    "DeepLabV3Plus": "deeplabv3p.inference.model",
    "ModelConfig": "deeplabv3p.models.config",
    "PretrainedCfg": "deeplabv3p.pretrained.config",
    "WeightsUnavailableError": "deeplabv3p.pretrained.fetch",
    "create_model": "deeplabv3p.inference.model",
    "get_pretrained_cfg": "deeplabv3p.pretrained.registry",
    "list_models": "deeplabv3p.pretrained.registry",
    "list_pretrained": "deeplabv3p.pretrained.registry",
    "PredictOptions": "deeplabv3p.inference.options",
    "SegmentationResult": "deeplabv3p.inference.result",
    "predict": "deeplabv3p.inference.pipeline",
    "predict_iter": "deeplabv3p.inference.pipeline",
    "SegmentationDataset": "deeplabv3p.train.datasets",
}
_SUBPACKAGES = ("models", "pretrained", "inference", "train", "cli")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # ``deeplabv3p.train.fit`` after a plain ``import deeplabv3p``
        return importlib.import_module(f"deeplabv3p.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deeplabv3p' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBPACKAGES})
