"""Checking a published number on the published dataset: open the split in the tag's layout, compare its size with
the official one, audit its labels before the long run, and set the measured mIoU beside the published one.

Used by ``deeplabv3p evaluate`` (and the dataset part by ``deeplabv3p train``); every function works the same in a
single process and under torchrun (each rank audits its share of the files and the findings are gathered).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from .. import distributed
from ..pretrained.config import PretrainedCfg
from .datasets import CLASSES_FILE, SegmentationDataset
from .layouts import LAYOUTS, MMSEG_LAYOUT, layout_for_dataset
from .layouts import zoo_dataset as zoo

__all__ = [
    "FOLDER_LAYOUT",
    "LAYOUT_CHOICES",
    "audit_split",
    "check_split_size",
    "compare_with_published",
    "open_dataset",
]

FOLDER_LAYOUT = "folder"  # the generic images/SPLIT + masks/SPLIT + classes.json tree
LAYOUT_CHOICES: tuple[str, ...] = (FOLDER_LAYOUT, MMSEG_LAYOUT, *LAYOUTS)


def open_dataset(
    data: str | Path,
    split: str,
    layout: str | None = None,
    dataset: str = "",
    reduce_zero_label: bool | None = None,
    ignore_index: int = 255,
    *,
    in_chans: int = 3,
) -> SegmentationDataset:
    """The split of `data` as a `SegmentationDataset`, read for a model of `in_chans` bands.

    `layout` None infers it: a folder with ``classes.json`` is the generic tree; otherwise the layout of `dataset`
    (the zoo dataset of the weights, e.g. ``"cityscapes"``); otherwise the generic tree. ``"mmseg"`` reads an
    ``img_dir``/``ann_dir`` tree with `dataset`'s classes when it is a zoo dataset. `reduce_zero_label` applies to
    the generic trees only (the named layouts take the zoo's). Multi-band images (`in_chans` other than 3) are read
    from the generic tree only: the benchmark layouts hold RGB images.
    """
    if layout is not None and layout not in LAYOUT_CHOICES:
        raise ValueError(f"unknown layout {layout!r}; choose from {list(LAYOUT_CHOICES)}")
    root = Path(data)
    if layout is None:
        inferred = layout_for_dataset(dataset) if dataset else None
        layout = FOLDER_LAYOUT if (root / CLASSES_FILE).is_file() or inferred is None else inferred
    if layout == FOLDER_LAYOUT:
        return SegmentationDataset(
            root, split, reduce_zero_label=bool(reduce_zero_label), ignore_index=ignore_index, in_chans=in_chans
        )
    if in_chans != 3:
        raise ValueError(
            f"the {layout!r} layout holds RGB images, but the model takes in_chans={in_chans}: put multi-band data "
            "in the generic tree (images/SPLIT, masks/SPLIT, classes.json)"
        )
    if layout == MMSEG_LAYOUT:
        known = dataset if dataset in LAYOUTS else None
        reduce = reduce_zero_label if known is None else None
        return SegmentationDataset.from_layout(MMSEG_LAYOUT, root, split, dataset=known, reduce_zero_label=reduce)
    return SegmentationDataset.from_layout(layout, root, split)


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


def compare_with_published(metrics: dict[str, Any], cfg: PretrainedCfg, tta: bool) -> dict[str, Any]:
    """``{"key", "published", "measured", "diff"}`` for the mIoU the weights were published with (single scale, or
    ``mIoU_ms_flip`` with TTA); published and diff are None when there is no published number."""
    key = "mIoU_ms_flip" if tta else "mIoU"
    published = cfg.metrics.get(key)
    measured = float(metrics["mIoU"])
    diff = None if published is None or math.isnan(measured) else round(measured - float(published), 2)
    return {"key": key, "published": published, "measured": measured, "diff": diff}


def comparison_line(comparison: dict[str, Any]) -> str:
    """``published mIoU 80.09, measured 80.03 (-0.06)``."""
    if comparison["published"] is None:
        return f"measured {comparison['key']} {comparison['measured']:.2f} (no published number for these weights)"
    return (
        f"published {comparison['key']} {comparison['published']:.2f}, measured {comparison['measured']:.2f} "
        f"({comparison['diff']:+.2f})"
    )


def warn(message: str | None) -> None:
    """Issue `message` as a UserWarning on rank 0 (when there is one)."""
    if message and distributed.current()[0] == 0:
        warnings.warn(message, UserWarning, stacklevel=2)


def dataset_record(dataset: SegmentationDataset) -> dict[str, Any]:
    """What was evaluated: layout, root, split, image count and the official count."""
    return {
        "layout": dataset.layout.layout if dataset.layout is not None else FOLDER_LAYOUT,
        "dataset": dataset.name,
        "root": str(dataset.root),
        "split": dataset.split,
        "images": len(dataset),
        "official_images": dataset.official_count,
        "classes": list(dataset.classes),
        "zoo": zoo(dataset.name)["display_name"] if dataset.layout is not None and dataset.layout.dataset else None,
    }
