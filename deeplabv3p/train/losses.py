"""The training loss: mmseg's ``CrossEntropyLoss`` with optional class weights and ``OHEMPixelSampler``.

mmseg computes a per-pixel cross-entropy (ignored pixels contribute 0, class weights scale each pixel by its
ground-truth class's weight) and averages it over **all** pixels of the batch by default
(``avg_non_ignore=False``, the setting every published row was trained with); ``avg_non_ignore=True`` averages over
the labelled pixels only (weighted by class weight when given), like PyTorch's ``reduction="mean"``.

OHEM (online hard example mining, used by the R-101-D16-MG124 rows with ``min_kept=100000``) keeps, per batch, the
``min_kept * batch`` labelled pixels with the highest loss, or with ``thresh`` those whose predicted probability of
the true class is below ``max(thresh, the min_kept-th smallest probability)``; the others get weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..fields import check_float, check_int

__all__ = ["SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """Pixel-wise cross-entropy for logits ``(N, K, H, W)`` and targets ``(N, H, W)``.

    Args:
        ignore_index: target value of pixels that count nowhere.
        class_weight: one weight per class, or None.
        avg_non_ignore: average over labelled pixels instead of all pixels (see module docstring).
        ohem_min_kept: enable OHEM, keeping at least this many pixels per image; None disables it.
        ohem_thresh: OHEM probability threshold (mmseg's ``thresh``); None ranks by loss instead.
    """

    class_weight: torch.Tensor | None  # a buffer: moves with .to(device)

    def __init__(
        self,
        ignore_index: int = 255,
        class_weight: Sequence[float] | torch.Tensor | None = None,
        avg_non_ignore: bool = False,
        ohem_min_kept: int | None = None,
        ohem_thresh: float | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        if class_weight is not None:
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if class_weight.dim() != 1 or not len(class_weight) or bool((class_weight < 0).any()):
                raise ValueError(f"class_weight must be a list of non-negative floats, got {class_weight.tolist()}")
        self.register_buffer("class_weight", class_weight, persistent=False)
        if ohem_min_kept is not None:
            check_int("ohem_min_kept", ohem_min_kept, 1)
        if ohem_thresh is not None:
            if ohem_min_kept is None:
                raise ValueError(f"ohem_thresh={ohem_thresh!r} needs ohem_min_kept (OHEM is off without it)")
            check_float("ohem_thresh", ohem_thresh, 0.0, 1.0, min_open=True, max_open=True)
        self.ohem_min_kept = ohem_min_kept
        self.ohem_thresh = ohem_thresh

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"logits must be (N, K, H, W) and target (N, H, W) of the same N, H, W; got logits "
                f"{tuple(logits.shape)} and target {tuple(target.shape)}"
            )
        weight = self.class_weight
        if weight is not None and len(weight) != logits.shape[1]:
            raise ValueError(f"class_weight has {len(weight)} entries for {logits.shape[1]} classes")
        logits = logits.float()
        target = target.long()
        pixel_loss = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        if self.ohem_min_kept is not None:
            pixel_loss = pixel_loss * self._ohem_weight(logits, target, pixel_loss, valid)
        if not self.avg_non_ignore:
            denominator = torch.tensor(float(target.numel()), device=logits.device)
        elif weight is not None:
            denominator = weight[target[valid]].sum()
        else:
            denominator = valid.sum().float()
        return pixel_loss.sum() / denominator.clamp_min(torch.finfo(torch.float32).eps)

    @torch.no_grad()
    def _ohem_weight(
        self, logits: torch.Tensor, target: torch.Tensor, pixel_loss: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        assert self.ohem_min_kept is not None  # forward calls this with OHEM on only
        batch_kept = self.ohem_min_kept * target.shape[0]
        kept = torch.zeros_like(pixel_loss)
        valid_kept = kept[valid]
        if self.ohem_thresh is not None:
            safe_target = target.masked_fill(~valid, 0).unsqueeze(1)
            prob = logits.softmax(dim=1).gather(1, safe_target).squeeze(1)[valid]
            sorted_prob, _ = prob.sort()
            min_threshold = sorted_prob[min(batch_kept, sorted_prob.numel() - 1)] if sorted_prob.numel() else 0.0
            valid_kept[prob < max(float(min_threshold), self.ohem_thresh)] = 1.0
        else:
            _, order = pixel_loss[valid].sort(descending=True)
            valid_kept[order[:batch_kept]] = 1.0
        kept[valid] = valid_kept
        return kept
