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

import torch
import torch.nn.functional as F
from torch import nn

from .settings import LossSettings

__all__ = ["LossSettings", "SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """Pixel-wise cross-entropy for logits ``(N, K, H, W)`` and targets ``(N, H, W)``.

    Args:
        ignore_index: target value of pixels that count nowhere.
        settings: class weights, averaging and OHEM (`LossSettings`; default: mmseg's, no class weights or OHEM).
    """

    class_weight: torch.Tensor | None  # a buffer: moves with .to(device)

    def __init__(self, ignore_index: int = 255, settings: LossSettings | None = None) -> None:
        super().__init__()
        settings = settings or LossSettings()
        self.ignore_index = ignore_index
        self.avg_non_ignore = settings.avg_non_ignore
        weight = None if settings.class_weight is None else torch.tensor(settings.class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)
        self.ohem_min_kept = settings.ohem_min_kept
        self.ohem_thresh = settings.ohem_thresh

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
