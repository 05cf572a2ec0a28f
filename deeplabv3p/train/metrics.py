"""Segmentation metrics with mmsegmentation's definitions, from a streaming confusion matrix.

Per class c, over every evaluated pixel whose ground truth is not ``ignore_index``:

- ``IoU[c] = TP / (TP + FP + FN)``: the intersection of prediction and ground truth over their union;
- ``Acc[c] = TP / (TP + FN)``: the fraction of the class's ground-truth pixels predicted as c;
- ``aAcc = sum(TP) / (number of pixels)``; ``mIoU`` and ``mAcc`` are the means of IoU and Acc over classes.

A 0/0 is NaN and is left out of the means (``nanmean``), exactly as mmseg's ``IoUMetric``: a class absent from both
prediction and ground truth has IoU NaN; a class absent from the ground truth has Acc NaN (and IoU 0 when it was
predicted). Reported values are percentages, as mmseg prints them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..fields import check_int
from ..inference.result import default_class_names

__all__ = ["ConfusionMatrix", "format_table", "metrics_from_confusion"]


class ConfusionMatrix:
    """Streaming ``num_classes x num_classes`` pixel counts: rows are ground truth, columns are predictions.

    ``update(pred, target)`` accepts label maps of the same shape (tensors or arrays, any leading dimensions);
    pixels whose target is ``ignore_index`` are skipped. Counts are int64, so they never saturate.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add one prediction/ground-truth pair (or a batch of them) to the counts."""
        pred = torch.as_tensor(pred, device=self.matrix.device)
        target = torch.as_tensor(target, device=self.matrix.device)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got pred {tuple(pred.shape)} and target "
                f"{tuple(target.shape)}; evaluate at the ground truth's resolution"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError(f"pred and target must be integer label maps, got {pred.dtype} and {target.dtype}")
        valid = target != self.ignore_index
        pred = pred[valid].long()
        target = target[valid].long()
        k = self.num_classes
        for name, labels in (("target", target), ("pred", pred)):
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
                bad = torch.unique(labels[(labels < 0) | (labels >= k)])[:10].tolist()
                raise ValueError(
                    f"{name} holds label(s) {bad} outside [0, {k}) that are not ignore_index={self.ignore_index}"
                )
        counts = torch.bincount(target * k + pred, minlength=k * k)
        self.matrix += counts.reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (from another shard of the data)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix.to(self.matrix.device)

    def compute(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The metrics of the counts so far (see `metrics_from_confusion`)."""
        return metrics_from_confusion(self.matrix, class_names)


def _percent(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator * 100.0


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def metrics_from_confusion(
    matrix: torch.Tensor | np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """``aAcc``, ``mIoU``, ``mAcc`` (floats) and per-class ``IoU`` and ``Acc`` (dicts name -> float), in percent.

    NaN marks an undefined per-class value (see the module docstring); the means skip it.
    """
    m = torch.as_tensor(matrix).detach().cpu().double().numpy()
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {m.shape}")
    k = m.shape[0]
    names = list(class_names) if class_names is not None else list(default_class_names(k))
    if len(names) != k:
        raise ValueError(f"{len(names)} class names given for a {k}-class confusion matrix")
    intersect = np.diag(m)
    area_label = m.sum(axis=1)
    area_pred = m.sum(axis=0)
    iou = _percent(intersect, area_label + area_pred - intersect)
    acc = _percent(intersect, area_label)
    total = area_label.sum()
    return {
        "aAcc": float(intersect.sum() / total * 100.0) if total else math.nan,
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "IoU": dict(zip(names, map(float, iou))),
        "Acc": dict(zip(names, map(float, acc))),
    }


def format_table(metrics: dict[str, Any]) -> str:
    """mmseg's per-class table (Class | IoU | Acc, two decimals) followed by the summary line."""
    names = list(metrics["IoU"])
    width = max([5, *(len(n) for n in names)])

    def cell(value: float) -> str:
        return f"{value:6.2f}" if not math.isnan(value) else "   nan"

    lines = [f"{'Class':<{width}} | {'IoU':>6} | {'Acc':>6}", f"{'-' * width}-+--------+-------"]
    lines += [f"{n:<{width}} | {cell(metrics['IoU'][n])} | {cell(metrics['Acc'][n])}" for n in names]
    lines.append(f"aAcc {metrics['aAcc']:.2f}  mIoU {metrics['mIoU']:.2f}  mAcc {metrics['mAcc']:.2f}")
    return "\n".join(lines)
