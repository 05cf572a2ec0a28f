"""`TrainConfig`: the recipe of a fine-tuning run, one documented field per setting (the fields are also the
keyword arguments of `fit` and the flags of ``deeplabv3p train``)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from ..fields import JsonRecord, check_bool, check_choice, check_float, check_int, check_pair, documented, option
from ..pretrained.test_settings import TestSettings
from .optim import OPTIMIZERS, OptimizerName
from .transforms import training_transforms

AmpMode = Literal["bf16", "fp16"]
AMP_MODES: tuple[AmpMode, ...] = typing.get_args(AmpMode)
# TrainConfig fields that may change between a run and its resumption without changing what is learned.
RUNTIME_FIELDS = ("num_workers", "log_interval", "keep_checkpoints", "val_interval", "checkpoint_interval")


@documented
@dataclass(frozen=True)
class TrainConfig(JsonRecord):
    """The recipe of a fine-tuning run (mmseg's defaults). Every field is also a keyword argument of `fit` and a
    flag of ``deeplabv3p train`` (``--field-name``); the fields of a sub-record such as ``test`` by their flat names
    (``test_mode="slide"``, ``--test-mode slide``)."""

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
    pad_size: tuple[int, int] | None = option(
        None, help="pad every batch to at least this (h, w) (mmseg's preprocessor size; default: crop_size)",
        metavar=("H", "W"),
    )  # fmt: skip
    test: TestSettings = option(
        default_factory=TestSettings,
        help="how validation and the saved model test images (its test_scale defaults to scale)",
    )
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
            check_int(name, getattr(self, name), 1)
        check_int("num_workers", self.num_workers, 0)
        check_int("seed", self.seed, 0)
        for name in ("val_interval", "checkpoint_interval"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        check_int("keep_checkpoints", self.keep_checkpoints)
        object.__setattr__(self, "crop_size", check_pair("crop_size", self.crop_size))
        for name in ("scale", "pad_size"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_pair(name, getattr(self, name)))
        for name in ("momentum", "weight_decay", "min_lr", "encoder_lr_mult", "aux_weight", "power"):
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
        if not isinstance(self.test, TestSettings):
            raise TypeError(f"test must be a TestSettings, got {self.test!r} ({type(self.test).__name__})")
        if isinstance(self.ratio_range, list):
            object.__setattr__(self, "ratio_range", tuple(self.ratio_range))
        # the augmentation checks its own settings (ratio_range, cat_max_ratio, flip_prob): build it once to ask
        training_transforms(self.crop_size, self.scale, self.ratio_range, self.cat_max_ratio, self.flip_prob)
        check_choice("amp", self.amp, (None, *AMP_MODES))
        if self.class_weight is not None:
            weights = self.class_weight
            if isinstance(weights, str) or not isinstance(weights, tuple | list) or not weights:
                raise ValueError(f"class_weight must be a non-empty list of numbers (one per class), got {weights!r}")
            for w in weights:
                check_float("class_weight entries", w, 0.0)
            object.__setattr__(self, "class_weight", tuple(float(w) for w in weights))
        for name in ("photometric", "freeze_encoder", "avg_non_ignore", "channels_last", "sync_bn"):
            check_bool(name, getattr(self, name))

    @property
    def resolved_test(self) -> TestSettings:
        """The test settings of validation and the saved model: ``test`` with its scale defaulting to ``scale``."""
        return self.test if self.test.scale is not None else self.test.replace(scale=self.scale)

    @property
    def resolved_val_interval(self) -> int:
        return self.val_interval or max(1, self.iters // 10)

    @property
    def resolved_checkpoint_interval(self) -> int:
        return self.checkpoint_interval or self.resolved_val_interval
