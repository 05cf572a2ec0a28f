"""`PretrainedCfg`: what a set of weights is (classes, palette, normalisation, test-time settings, provenance)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models.config import JsonRecord, check_choice

# Version of the saved ``config.json`` layout (architecture, model_config, pretrained_cfg, library_version).
CONFIG_SCHEMA_VERSION = 1

TestMode = Literal["whole", "slide"]
TEST_MODES: tuple[TestMode, ...] = typing.get_args(TestMode)


@dataclass(frozen=True)
class PretrainedCfg(JsonRecord):
    """What a set of weights is: where it comes from, what it predicts and how it was tested.

    Test-time fields follow mmseg's semantics: ``test_scale`` is mmcv's keep-ratio rescale target ``(a, b)``
    (long and short side bounds), ``test_mode`` is ``"whole"`` or ``"slide"`` with ``slide_crop`` / ``slide_stride``
    as (h, w), and ``tta_ratios`` multiply ``test_scale`` (mmseg 0.x ``--aug-test``).
    """

    architecture: str = ""
    tag: str = ""
    dataset: str = ""
    num_classes: int | None = None
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    reduce_zero_label: bool = False
    ignore_index: int = 255
    crop_size: tuple[int, int] | None = None
    test_scale: tuple[int, int] | None = None
    keep_ratio: bool = True
    test_mode: TestMode = "whole"
    slide_crop: tuple[int, int] | None = None
    slide_stride: tuple[int, int] | None = None
    tta_ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    tta_flip: bool = True
    align_corners: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    hf_hub_id: str | None = None
    url: str | None = None
    sha256_prefix: str | None = None
    source_config: str | None = None
    iters: int | None = None
    license: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice("test_mode", self.test_mode, TEST_MODES)
        if self.test_mode == "slide" and (self.slide_crop is None or self.slide_stride is None):
            raise ValueError("test_mode 'slide' needs slide_crop and slide_stride as (h, w)")
        if self.classes and self.num_classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names given for num_classes={self.num_classes}")
        if self.palette and self.classes and len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.palette)} palette colours given for {len(self.classes)} classes")

    @property
    def name(self) -> str:
        """``architecture.tag``, the name `create_model` accepts."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    def for_new_classes(self, num_classes: int, architecture: str | None = None) -> PretrainedCfg:
        """Metadata of a model started from these weights with another class count (fine-tuning).

        Keeps what still holds for the new model: input normalization, crop and test-time settings, ignore index,
        align_corners and licence, plus a note naming these weights. Tag, dataset, classes, palette, label
        reduction, metrics and download sources describe the old weights and are dropped.
        """
        origin = self.name if self.tag else (self.hf_hub_id or self.architecture or "other weights")
        kept: tuple[str, ...] = ("mean", "std", "ignore_index", "crop_size", "test_scale", "keep_ratio", "test_mode")
        kept += ("slide_crop", "slide_stride", "tta_ratios", "tta_flip", "align_corners", "license")
        return PretrainedCfg(
            architecture=architecture or self.architecture,
            num_classes=num_classes,
            notes=(
                f"initialised from {origin} ({self.num_classes} classes); classifier re-initialised for "
                f"{num_classes} classes",
            ),
            **{name: getattr(self, name) for name in kept},
        )
