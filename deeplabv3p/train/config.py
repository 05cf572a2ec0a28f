"""`TrainConfig`: the recipe of a fine-tuning run, one documented field per setting (the fields are also the
keyword arguments of `fit` and the flags of ``deeplabv3p train``)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Literal

from ..models.config import JsonRecord, documented, option

AmpMode = Literal["bf16", "fp16"]
AMP_MODES: tuple[AmpMode, ...] = typing.get_args(AmpMode)
# TrainConfig fields that may change between a run and its resumption without changing what is learned.
RUNTIME_FIELDS = ("num_workers", "log_interval", "keep_checkpoints", "val_interval", "checkpoint_interval")


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@documented
@dataclass(frozen=True)
class TrainConfig(JsonRecord):
    """The recipe of a fine-tuning run (mmseg's defaults). Every field is also a keyword argument of `fit` and a
    flag of ``deeplabv3p train`` (``--field-name``)."""

    iters: int = option(2000, help="optimiser steps")
    batch_size: int = option(
        8, help="images per step and process (the global batch is batch_size * world size * accum_steps)"
    )
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
    lr: float = option(0.01, help="SGD learning rate")
    momentum: float = option(0.9, help="SGD momentum")
    weight_decay: float = option(5e-4, help="SGD weight decay")
    power: float = option(0.9, help="PolyLR power")
    min_lr: float = option(1e-4, help="PolyLR floor")
    encoder_lr_mult: float = option(1.0, help="encoder learning rate = lr * encoder_lr_mult")
    freeze_encoder: bool = option(
        False, help="train the decoder and classifier only (the encoder's BatchNorm statistics still adapt)"
    )
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
    amp: AmpMode | None = option(
        None, help="mixed precision: bf16, or fp16 with a gradient scaler (default: full precision)"
    )
    channels_last: bool = option(False, help="NHWC memory format")
    accum_steps: int = option(1, help="batches whose gradients are summed into one optimiser step")
    val_interval: int | None = option(None, help="iterations between validations (default: iters // 10, as mmseg)")
    checkpoint_interval: int | None = option(
        None, help="iterations between checkpoints (default: the validation interval)"
    )
    keep_checkpoints: int = option(2, help="how many checkpoints to keep (<= 0 keeps all)")
    log_interval: int = option(50, help="iterations between log records")
    num_workers: int = option(2, help="data-loading worker processes per rank")
    seed: int = option(0, help="seeds the sample order, the augmentation and dropout")
    sync_bn: bool = option(
        True, help="SyncBatchNorm in multi-GPU training (CUDA only; CPU processes keep per-process BatchNorm)"
    )

    def __post_init__(self) -> None:
        for name in ("iters", "batch_size", "accum_steps", "log_interval"):
            _positive_int(name, getattr(self, name))
        _positive_int("num_workers", self.num_workers, 0)
        _positive_int("seed", self.seed, 0)
        for name in ("val_interval", "checkpoint_interval"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if isinstance(self.keep_checkpoints, bool) or not isinstance(self.keep_checkpoints, int):
            raise ValueError(f"keep_checkpoints must be an int, got {self.keep_checkpoints!r}")
        for name in ("crop_size", "scale"):
            value = getattr(self, name)
            if value is None and name == "scale":
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                value = (value, value)
            if not (isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
                raise ValueError(f"{name} must be an (h, w) pair of ints, got {value!r}")
            if min(value) < 1:
                raise ValueError(f"{name} must be positive, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("lr", "momentum", "weight_decay", "min_lr", "encoder_lr_mult", "aux_weight", "power"):
            _non_negative(name, getattr(self, name))
        if self.amp not in (None, *AMP_MODES):
            raise ValueError(f"amp must be None or one of {list(AMP_MODES)}, got {self.amp!r}")
        if self.class_weight is not None:
            object.__setattr__(self, "class_weight", tuple(float(w) for w in self.class_weight))
        for name in ("photometric", "freeze_encoder", "avg_non_ignore", "channels_last", "sync_bn"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def resolved_val_interval(self) -> int:
        return self.val_interval or max(1, self.iters // 10)

    @property
    def resolved_checkpoint_interval(self) -> int:
        return self.checkpoint_interval or self.resolved_val_interval
