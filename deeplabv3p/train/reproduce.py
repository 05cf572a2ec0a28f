"""Checking a published number on the published dataset (opened by `SegmentationDataset` in the tag's layout):
compare the split's size with the official one, audit its labels before the long run, and set the measured mIoU
beside the published one.

Used by ``deeplabv3p evaluate`` (and the dataset part by ``deeplabv3p train``); every function works the same in a
single process and under torchrun (each rank audits its share of the files and the findings are gathered).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from .. import distributed
from ..pretrained.config import PretrainedCfg
from .datasets import SegmentationDataset
from .layouts import FOLDER
from .layouts import zoo_dataset as zoo

__all__ = ["audit_split", "check_split_size", "compare_with_published"]


def check_split_size(dataset: SegmentationDataset) -> str | None:
    """A warning when the split holds another number of images than the official release, else None."""
    expected = dataset.official_count
    if expected is None or expected == len(dataset):
        return None
    name = dataset.layout.layout if dataset.layout is not None else dataset.name
    return (
        f"{name} split {dataset.split!r} has {len(dataset)} images but the official one has {expected}: "
        "the numbers will not be comparable with the published ones (an incomplete download or conversion?)"
    )


def audit_split(dataset: SegmentationDataset, progress: bool = True) -> None:
    """Read every label file of the split (shared over the processes of a torchrun launch) and raise one ValueError
    listing the problems (wrong values, colour labels, Cityscapes labelIds/trainIds mix-ups) before a long run."""
    rank, world = distributed.current()
    problems = dataset.audit_labels(range(rank, len(dataset), world), progress=progress and rank == 0)
    gathered = [p for part in distributed.all_gather_object(problems) for p in part]
    if gathered:
        shown = "\n  ".join(gathered[:10])
        more = f"\n  ... and {len(gathered) - 10} more" if len(gathered) > 10 else ""
        raise ValueError(
            f"{len(gathered)} of {len(dataset)} label files of {str(dataset.root)!r} split {dataset.split!r} are not "
            f"what the model's labels need:\n  {shown}{more}"
        )


def compare_with_published(
    metrics: dict[str, Any], cfg: PretrainedCfg, tta: bool, split: str | None = None
) -> dict[str, Any]:
    """``{"key", "published", "measured", "diff", "split", "run_validation"}`` for the mIoU the weights were
    published with (single scale, or ``mIoU_ms_flip`` with TTA), measured on `split`.

    Only a zoo tag (``cfg.tag``) has a published number; published and diff are None otherwise. A model of one's own
    (fine-tuned, saved) carries in ``cfg.metrics`` its training run's validation score when it was saved, which is
    returned as ``run_validation``, never as a published number.
    """
    key = "mIoU_ms_flip" if tta else "mIoU"
    measured = float(metrics["mIoU"])
    own = not cfg.tag
    published = None if own else cfg.metrics.get(key)
    diff = None if published is None or math.isnan(measured) else round(measured - float(published), 2)
    run_validation = cfg.metrics.get(key) if own else None
    return {
        "key": key, "published": published, "measured": measured, "diff": diff, "split": split,
        "run_validation": run_validation,
    }  # fmt: skip


def comparison_line(comparison: dict[str, Any]) -> str:
    """``published mIoU 80.09, measured 80.03 (-0.06)`` for a zoo tag; for a model of one's own, the measured number
    and what the number saved with it is (its training run's validation score)."""
    key, measured, split = comparison["key"], comparison["measured"], comparison.get("split")
    on = f" on split {split!r}" if split else ""
    if comparison["published"] is not None:
        return f"published {key} {comparison['published']:.2f}, measured {measured:.2f} ({comparison['diff']:+.2f})"
    if comparison.get("run_validation") is not None:
        return (
            f"measured {key} {measured:.2f}{on}; the {key} {comparison['run_validation']:.2f} saved with these "
            "weights is not a published number but their training run's validation score when they were saved "
            "(OUT/best: the run's best), on the run's validation split (train --val-split, default val)"
        )
    return f"measured {key} {measured:.2f}{on} (no published number for these weights)"


def warn(message: str | None) -> None:
    """Issue `message` as a UserWarning on rank 0 (when there is one)."""
    if message and distributed.current()[0] == 0:
        warnings.warn(message, UserWarning, stacklevel=2)


def dataset_record(dataset: SegmentationDataset) -> dict[str, Any]:
    """What was evaluated: layout, root, split, image count and the official count."""
    return {
        "layout": dataset.layout.layout if dataset.layout is not None else FOLDER,
        "dataset": dataset.name,
        "root": str(dataset.root),
        "split": dataset.split,
        "images": len(dataset),
        "official_images": dataset.official_count,
        "classes": list(dataset.classes),
        "zoo": zoo(dataset.name)["display_name"] if dataset.layout is not None and dataset.layout.dataset else None,
    }
