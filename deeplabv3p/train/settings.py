"""The settings records of the training components, torch-free so that ``deeplabv3p train --help`` builds its flags
without importing torch: `AugmentSettings` (`deeplabv3p.train.transforms`), `OptimSettings`
(`deeplabv3p.train.optim`) and `LossSettings` (`deeplabv3p.train.losses`). Each component's module re-exports its
record and holds the torch code that uses it."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from ..fields import (
    JsonRecord,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_pair,
    documented,
    option,
)  # fmt: skip

__all__ = ["OPTIMIZERS", "AugmentSettings", "LossSettings", "OptimSettings", "OptimizerName"]


@documented
@dataclass(frozen=True)
class AugmentSettings(JsonRecord):
    """mmseg's training augmentation (`training_transforms`): random resize, random crop, flip and photometric
    distortion. Frozen and validated."""

    crop_size: tuple[int, int] = option((512, 512), help="training crop (h, w)", metavar=("H", "W"))
    scale: tuple[int, int] | None = option(
        None,
        help="mmseg's resize target (a, b) that ratio_range multiplies, e.g. 2048 512; also the test-time resize "
        "recorded with the model (default: each image's own size)",
        metavar=("A", "B"),
    )
    ratio_range: tuple[float, float] = option(
        (0.5, 2.0), help="random resize ratios (min, max) of the scale", metavar=("MIN", "MAX")
    )
    cat_max_ratio: float = option(0.75, help="random crop: the largest share one class may take of a crop")
    flip_prob: float = option(0.5, help="probability of a horizontal flip")
    photometric: bool = option(True, help="photometric distortion (brightness, contrast, saturation, hue)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_size", check_pair("crop_size", self.crop_size))
        if self.scale is not None:
            object.__setattr__(self, "scale", check_pair("scale", self.scale))
        if isinstance(self.ratio_range, list):
            object.__setattr__(self, "ratio_range", tuple(self.ratio_range))
        check_bool("photometric", self.photometric)
        from .transforms import training_transforms  # torch: loaded when settings are made, not for --help

        training_transforms(self)  # the transforms check their own settings (ratio_range, cat_max_ratio, flip_prob)


OptimizerName = Literal["sgd", "adamw"]
OPTIMIZERS: tuple[OptimizerName, ...] = typing.get_args(OptimizerName)


@documented
@dataclass(frozen=True)
class OptimSettings(JsonRecord):
    """The optimiser (`build_optimizer`), its PolyLR schedule (`PolyLR`) and gradient clipping, mmseg's defaults.
    Frozen and validated."""

    optimizer: OptimizerName = option("sgd", help="the optimiser: sgd (mmseg's default) or adamw (with betas)")
    betas: tuple[float, float] = option(
        (0.9, 0.999), help="AdamW's coefficients of the running averages (b1, b2)", metavar=("B1", "B2")
    )
    lr: float = option(0.01, help="learning rate")
    momentum: float = option(0.9, help="SGD momentum, in [0, 1)")
    weight_decay: float = option(5e-4, help="weight decay")
    power: float = option(0.9, help="PolyLR power")
    min_lr: float = option(1e-4, help="PolyLR floor")
    encoder_lr_mult: float = option(1.0, help="encoder learning rate = lr * encoder_lr_mult")
    clip_grad_norm: float | None = option(
        None, help="clip the gradients' global L2 norm to this (mmseg's clip_grad; default: no clipping)",
        metavar="NORM",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("momentum", "weight_decay", "min_lr", "encoder_lr_mult", "power"):
            check_float(name, getattr(self, name), 0.0)
        check_float("lr", self.lr, 0.0, min_open=True)
        if not self.momentum < 1:
            raise ValueError(
                f"momentum must be in [0, 1) (SGD diverges from 1 on; mmseg uses 0.9), got {self.momentum!r}"
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not (isinstance(self.betas, tuple | list) and len(self.betas) == 2):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        betas = tuple(check_float("betas entries", b, 0.0, 1.0, max_open=True) for b in self.betas)
        object.__setattr__(self, "betas", betas)
        if self.clip_grad_norm is not None:
            check_float("clip_grad_norm", self.clip_grad_norm, 0.0, min_open=True)


@documented
@dataclass(frozen=True)
class LossSettings(JsonRecord):
    """The training loss (`SegmentationLoss`) and the auxiliary head's share of it, mmseg's defaults. Frozen and
    validated."""

    aux_weight: float = option(0.4, help="weight of the auxiliary head's loss (when the model has one)")
    class_weight: tuple[float, ...] | None = option(None, help="one loss weight per class", metavar="W")
    avg_non_ignore: bool = option(
        False, help="average the loss over labelled pixels instead of all pixels (mmseg's default is off)"
    )
    ohem_min_kept: int | None = option(
        None, help="OHEM: keep at least N hardest pixels per image on the main head's loss (default: no OHEM)",
        metavar="N",
    )  # fmt: skip
    ohem_thresh: float | None = option(None, help="OHEM probability threshold (with ohem_min_kept)")

    def __post_init__(self) -> None:
        check_float("aux_weight", self.aux_weight, 0.0)
        if self.class_weight is not None:
            weights = self.class_weight
            if isinstance(weights, str) or not isinstance(weights, tuple | list) or not weights:
                raise ValueError(f"class_weight must be a non-empty list of numbers (one per class), got {weights!r}")
            for w in weights:
                check_float("class_weight entries", w, 0.0)
            object.__setattr__(self, "class_weight", tuple(float(w) for w in weights))
        check_bool("avg_non_ignore", self.avg_non_ignore)
        if self.ohem_min_kept is not None:
            check_int("ohem_min_kept", self.ohem_min_kept, 1)
        if self.ohem_thresh is not None:
            if self.ohem_min_kept is None:
                raise ValueError(f"ohem_thresh={self.ohem_thresh!r} needs ohem_min_kept (OHEM is off without it)")
            check_float("ohem_thresh", self.ohem_thresh, 0.0, 1.0, min_open=True, max_open=True)

    def without_ohem(self) -> LossSettings:
        """These settings for the auxiliary head, whose loss mmseg computes without the OHEM sampler."""
        return self.replace(ohem_min_kept=None, ohem_thresh=None)
