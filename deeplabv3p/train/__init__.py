"""Training and evaluation: datasets, augmentation, batching, losses, optimiser and schedule, metrics, checkpoints,
`fit` / `evaluate` and the offline demo. ``deeplabv3p.train.fit(model, dataset, ...)`` is the entry point."""

from .config import TrainConfig
from .datasets import SegmentationDataset
from .evaluation import evaluate
from .trainer import FitResult, fit

__all__ = ["FitResult", "SegmentationDataset", "TrainConfig", "evaluate", "fit"]
