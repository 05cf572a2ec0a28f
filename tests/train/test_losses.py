"""The training loss (mmseg's CrossEntropyLoss, OHEM) and the schedule (PolyLR, parameter groups)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplabv3p.train.losses import LossSettings, SegmentationLoss
from deeplabv3p.train.optim import OptimSettings, PolyLR, build_optimizer


def _batch(seed: int = 0, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 5, 6, generator=g)
    target = torch.randint(0, k, (2, 5, 6), generator=g)
    target[0, :2] = 255
    return logits, target


def test_loss_ignores_255_pixels() -> None:
    logits, target = _batch()
    logits.requires_grad_(True)
    loss = SegmentationLoss()(logits, target)
    loss.backward()
    ignored = (target == 255).unsqueeze(1).expand_as(logits)
    assert logits.grad[ignored].abs().max() == 0  # no gradient through ignored pixels
    assert logits.grad[~ignored].abs().max() > 0
    changed = logits.detach().clone()
    changed[ignored] = 1e3  # anything at ignored pixels: the loss does not move
    assert SegmentationLoss()(changed, target) == pytest.approx(loss.item())


def test_default_averages_over_all_pixels_as_mmseg() -> None:
    logits, target = _batch()
    valid = target != 255
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    assert SegmentationLoss()(logits, target) == pytest.approx((per_pixel.sum() / target.numel()).item())
    non_ignore = SegmentationLoss(settings=LossSettings(avg_non_ignore=True))(logits, target)
    assert non_ignore == pytest.approx(F.cross_entropy(logits, target, ignore_index=255).item())
    assert non_ignore == pytest.approx((per_pixel.sum() / valid.sum()).item())


def test_class_weights() -> None:
    logits, target = _batch()
    weight = [1.0, 2.0, 0.5, 0.0]
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weight), ignore_index=255)  # weighted mean
    assert SegmentationLoss(settings=LossSettings(class_weight=weight, avg_non_ignore=True))(
        logits, target
    ) == pytest.approx(expected.item())
    per_pixel = F.cross_entropy(logits, target, weight=torch.tensor(weight), ignore_index=255, reduction="none")
    assert SegmentationLoss(settings=LossSettings(class_weight=weight))(logits, target) == pytest.approx(
        per_pixel.mean().item()
    )
    with pytest.raises(ValueError, match="class_weight has 3 entries for 4 classes"):
        SegmentationLoss(settings=LossSettings(class_weight=[1, 1, 1]))(logits, target)


def test_ohem_keeps_the_hardest_pixels() -> None:
    logits, target = _batch(1)
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    min_kept = 5
    hardest = per_pixel[target != 255].sort(descending=True).values[: min_kept * 2]
    loss = SegmentationLoss(settings=LossSettings(ohem_min_kept=min_kept))(logits, target)
    assert loss == pytest.approx((hardest.sum() / target.numel()).item())


def test_ohem_threshold_keeps_low_confidence_pixels() -> None:
    logits, target = _batch(2)
    logits = logits * 3  # spread the probabilities out
    valid = target != 255
    prob = logits.softmax(1).gather(1, target.clamp(max=3).unsqueeze(1)).squeeze(1)
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    # min_kept 1 per image, batch 2 -> threshold = max(0.3, the sorted valid probabilities[2]), i.e. 0.3 here
    assert prob[valid].sort().values[2] < 0.3
    kept = valid & (prob < 0.3)
    loss = SegmentationLoss(settings=LossSettings(ohem_min_kept=1, ohem_thresh=0.3))(logits, target)
    assert 0 < kept.sum() < valid.sum()
    assert loss == pytest.approx((per_pixel[kept].sum() / target.numel()).item())


def test_loss_argument_errors() -> None:
    with pytest.raises(ValueError, match="ohem_min_kept"):
        LossSettings(ohem_min_kept=0)
    with pytest.raises(ValueError, match="ohem_thresh"):
        LossSettings(ohem_thresh=0.7)
    with pytest.raises(ValueError, match=r"class_weight entries must be a finite number >= 0, got -1"):
        LossSettings(class_weight=(1.0, -1))
    assert LossSettings(ohem_min_kept=5, ohem_thresh=0.7).without_ohem() == LossSettings()  # the auxiliary head's
    with pytest.raises(ValueError, match="logits must be"):
        SegmentationLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)


def test_poly_lr_follows_mmengine_formula() -> None:
    net = _Net()
    opt = build_optimizer(net, OptimSettings(lr=0.01, encoder_lr_mult=0.1))
    sched = PolyLR(opt, total_iters=10, power=0.9, eta_min=1e-4)
    seen = []
    for _ in range(12):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for t, (encoder_lr, head_lr) in enumerate(seen):
        factor = (1 - min(t, 10) / 10) ** 0.9
        assert head_lr == pytest.approx((0.01 - 1e-4) * factor + 1e-4)
        assert encoder_lr == pytest.approx((0.001 - 1e-4) * factor + 1e-4)
    assert seen[0] == pytest.approx([0.001, 0.01])
    assert seen[-1] == pytest.approx([1e-4, 1e-4])


def test_optimizer_groups_and_frozen_parameters() -> None:
    net = _Net()
    opt = build_optimizer(net, OptimSettings(lr=0.02, momentum=0.8, weight_decay=1e-3, encoder_lr_mult=0.5))
    names = [g["name"] for g in opt.param_groups]
    assert names == ["encoder", "head"]
    assert opt.param_groups[0]["params"][0] is net.encoder.weight
    assert opt.defaults["momentum"] == 0.8 and opt.defaults["weight_decay"] == 1e-3
    net.encoder.requires_grad_(False)
    assert [g["name"] for g in build_optimizer(net).param_groups] == ["head"]
    net.head.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(net)
