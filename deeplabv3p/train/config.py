"""`TrainConfig`: the recipe of a fine-tuning run, one documented field per setting. The settings of each component
are a record of that component's module (`AugmentSettings`, `OptimSettings`, `LossSettings`, `TestSettings`); their
fields, by flat name, are the keyword arguments of `fit` and the flags of ``deeplabv3p train``."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from ..fields import JsonRecord, check_bool, check_choice, check_int, check_pair, check_records, documented, option
from ..pretrained.test_settings import TestSettings
from .settings import AugmentSettings, LossSettings, OptimSettings

AmpMode = Literal["auto", "bf16", "fp16"]
AMP_MODES: tuple[AmpMode, ...] = typing.get_args(AmpMode)
# TrainConfig fields that may change between a run and its resumption without changing what is learned.
RUNTIME_FIELDS = (
    "num_workers", "log_interval", "keep_checkpoints", "val_interval", "checkpoint_interval", "check_data",
)  # fmt: skip


@documented
@dataclass(frozen=True)
class TrainConfig(JsonRecord):
    """The recipe of a fine-tuning run (mmseg's defaults). Every field is also a keyword argument of `fit` and a
    flag of ``deeplabv3p train`` (``--field-name``); the fields of a sub-record such as ``test`` by their flat names
    (``lr=0.02``, ``--lr 0.02``, ``test_mode="slide"``, ``--test-mode slide``)."""

    iters: int = option(2000, help="optimiser steps")
    batch_size: int = option(
        8, help="images per step and process (the global batch is batch_size * world size * accum_steps)"
    )
    augment: AugmentSettings = option(default_factory=AugmentSettings, help="the training augmentation")
    optim: OptimSettings = option(
        default_factory=OptimSettings, help="the optimiser, its learning-rate schedule and gradient clipping"
    )
    pad_size: tuple[int, int] | None = option(
        None, help="pad every batch to at least this (h, w) (mmseg's preprocessor size; default: the crop size)",
        metavar=("H", "W"),
    )  # fmt: skip
    test: TestSettings = option(
        default_factory=TestSettings,
        help="how validation and the saved model test images (its test_scale defaults to scale)",
    )
    freeze_encoder: bool = option(
        False, help="train the decoder and classifier only (the encoder's BatchNorm statistics still adapt)"
    )
    loss: LossSettings = option(default_factory=LossSettings, help="the training loss")
    amp: AmpMode | None = option(
        None,
        help="mixed precision: bf16, fp16 (with a gradient scaler) or auto (what the device runs natively: bf16 on "
        "CPUs with AVX512-BF16/AMX and GPUs from sm_80, fp16 on older GPUs, else full precision; the run records "
        "the choice); a precision the device only emulates is refused (default: full precision)",
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
    check_data: bool = option(
        False,
        help="before training, read every sample's file headers and mask values (with a progress bar), so that a "
        "bad sample deep in a large dataset fails now, naming its file, rather than hours into the run",
    )
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
        if self.pad_size is not None:
            object.__setattr__(self, "pad_size", check_pair("pad_size", self.pad_size))
        check_records(self)
        check_choice("amp", self.amp, (None, *AMP_MODES))
        for name in ("freeze_encoder", "channels_last", "sync_bn", "check_data"):
            check_bool(name, getattr(self, name))

    @property
    def resolved_test(self) -> TestSettings:
        """The test settings of validation and the saved model: ``test`` with its scale defaulting to the
        augmentation's ``scale``."""
        return self.test if self.test.scale is not None else self.test.replace(scale=self.augment.scale)

    @property
    def resolved_pad_size(self) -> tuple[int, int]:
        """What every batch is padded to at least: ``pad_size``, else the training crop."""
        return self.pad_size or self.augment.crop_size

    @property
    def resolved_val_interval(self) -> int:
        return self.val_interval or max(1, self.iters // 10)

    @property
    def resolved_checkpoint_interval(self) -> int:
        return self.checkpoint_interval or self.resolved_val_interval
