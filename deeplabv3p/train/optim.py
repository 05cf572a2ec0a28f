"""mmseg's optimisers and schedule: SGD (or AdamW, the Mapillary row's) over parameter groups, and ``PolyLR`` stepped
once per iteration."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from ..fields import check_int
from .settings import OPTIMIZERS, OptimizerName, OptimSettings

__all__ = ["OPTIMIZERS", "OptimSettings", "OptimizerName", "PolyLR", "build_optimizer"]


def build_optimizer(model: nn.Module, settings: OptimSettings | None = None) -> torch.optim.Optimizer:
    """SGD (or AdamW with ``betas``; ``momentum`` is then unused) over the trainable parameters, as `settings`
    (default: mmseg's) say; the encoder's (``model.encoder``) learning rate is ``lr * encoder_lr_mult`` (mmseg's
    ``paramwise_cfg`` backbone ``lr_mult``).

    Weight decay applies to every parameter, norms and biases included, as mmseg's default optimiser does.
    Frozen parameters (``requires_grad=False``) are left out.
    """
    settings = settings or OptimSettings()
    lr, encoder_lr_mult, weight_decay = settings.lr, settings.encoder_lr_mult, settings.weight_decay
    encoder = getattr(model, "encoder", None)
    encoder_ids = {id(p) for p in encoder.parameters()} if isinstance(encoder, nn.Module) else set()
    groups: dict[str, list[nn.Parameter]] = {"encoder": [], "head": []}
    for p in model.parameters():
        if p.requires_grad:
            groups["encoder" if id(p) in encoder_ids else "head"].append(p)
    param_groups: list[dict[str, Any]] = [
        {"params": groups["encoder"], "lr": lr * encoder_lr_mult, "name": "encoder"},
        {"params": groups["head"], "lr": lr, "name": "head"},
    ]
    param_groups = [g for g in param_groups if g["params"] and g["lr"] > 0]
    if not param_groups:
        raise ValueError("no trainable parameters: everything is frozen (or encoder_lr_mult=0 with a frozen head)")
    if settings.optimizer == "adamw":
        betas = (settings.betas[0], settings.betas[1])
        return torch.optim.AdamW(param_groups, lr=lr, betas=betas, weight_decay=weight_decay)
    return torch.optim.SGD(param_groups, lr=lr, momentum=settings.momentum, weight_decay=weight_decay)


class PolyLR(LRScheduler):
    """``lr = (base_lr - eta_min) * (1 - t / total_iters) ** power + eta_min`` at iteration t (mmengine's PolyLR).

    Call ``step()`` after every optimiser step. Each group's floor is ``min(eta_min, its base lr)``, so a group
    with a small multiplier never climbs. The state (``state_dict``) is the iteration count, so resuming restores
    the schedule position exactly.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_iters: int, power: float = 0.9, eta_min: float = 1e-4,
        last_epoch: int = -1,
    ) -> None:  # fmt: skip
        self.total_iters = check_int("total_iters", total_iters, 1)
        self.power = power
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t: int) -> list[float]:
        progress = min(t, self.total_iters) / self.total_iters
        return [
            (base - min(self.eta_min, base)) * (1.0 - progress) ** self.power + min(self.eta_min, base)
            for base in self.base_lrs
        ]

    def get_lr(self) -> list[float | torch.Tensor]:  # LRScheduler's element type
        return [*self._lr_at(self.last_epoch)]

    def _get_closed_form_lr(self) -> list[float]:
        return self._lr_at(self.last_epoch)
