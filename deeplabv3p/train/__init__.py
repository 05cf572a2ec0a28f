"""Training and evaluation: datasets, augmentation, batching, losses, optimiser and schedule, metrics, checkpoints,
`fit` / `evaluate` and the offline demo. ``deeplabv3p.train.fit(model, dataset, ...)`` is the entry point. The names
load on first access (`deeplabv3p.lazy`), so that a torch-free module of this package (`TrainConfig`, the layout
names) serves the command line's ``--help`` without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is what runs
    from .config import TrainConfig
    from .datasets import SegmentationDataset
    from .evaluation import evaluate
    from .trainer import FitResult, fit

_EXPORTS = {
    "FitResult": "trainer",
    "SegmentationDataset": "datasets",
    "TrainConfig": "config",
    "evaluate": "evaluation",
    "fit": "trainer",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
