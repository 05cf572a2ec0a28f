"""Configuration records: what a network is (`ModelConfig`) and what its weights are (`PretrainedCfg`).

Both are dataclasses with a JSON round trip (`to_dict` / `from_dict`), which is the one config format the
library writes to disk (`config.json` next to `model.safetensors`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

CONFIG_SCHEMA_VERSION = 1

OUTPUT_STRIDES = (8, 16, 32)
DILATION_POLICIES = ("timm", "mmseg")
TEST_MODES = ("whole", "slide")

# ASPP rates by output stride when none are given: DeepLab's (6, 12, 18) at stride 16, doubled at 8, halved at 32.
DEFAULT_ASPP_RATES = {8: (1, 12, 24, 36), 16: (1, 6, 12, 18), 32: (1, 3, 6, 9)}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _tupled(value: Any) -> Any:
    """Lists (from JSON) back to tuples, recursively, so configs compare equal after a round trip."""
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _listed(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_listed(v) for v in value]
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    return value


class _JsonRecord:
    """JSON round trip shared by the config dataclasses: unknown keys are an error, not silently dropped."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _listed(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} field(s) {unknown}; accepted fields are {sorted(names)}. "
                "The file may come from a newer deeplabv3p: upgrade the package."
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            if _is_tuple_type(hints[key]):
                value = _tupled(value)
            elif isinstance(value, dict):  # e.g. encoder_kwargs={"channels": [8, 16]} from JSON -> (8, 16)
                value = {k: _tupled(v) for k, v in value.items()}
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self, **changes: Any):
        """A copy with `changes` applied and validated."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _is_tuple_type(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(hint))
    return False


@dataclass(frozen=True)
class ModelConfig(_JsonRecord):
    """The architecture of one DeepLabV3+ network. Everything needed to build it, nothing about weights.

    Attributes:
        architecture: registry name this config came from (``deeplabv3plus_r50_d8`` or ``deeplabv3plus``).
        encoder: timm model name used as the feature extractor.
        encoder_kwargs: extra keyword arguments for ``timm.create_model`` (stem type, widths, ...).
        output_stride: 8, 16 or 32; the reduction of the deepest feature.
        dilation_policy: ``"timm"`` (timm's own dilation) or ``"mmseg"`` (mmseg's ResNet rules: contract
            dilation, BasicBlock dilates only its first conv, multi-grid taken as is). ``"mmseg"`` needs a timm ResNet.
        multi_grid: per-block dilations of the last stage (mmseg semantics), or None.
        num_classes: number of output classes.
        in_chans: number of input channels.
        decoder_channels: width of the ASPP and decoder convolutions.
        low_level_channels: width of the 1x1 projection of the stride-4 feature.
        aspp_rates: ASPP dilations, a rate of 1 meaning the 1x1 branch; None follows the output stride.
        dropout: dropout before the classifier (and the auxiliary classifier).
        aux_head: whether to build the FCN auxiliary head on the second-deepest feature (training only).
        aux_channels: width of the auxiliary head.
        align_corners: ``align_corners`` of every bilinear resize in the network.
    """

    architecture: str = "deeplabv3plus"
    encoder: str = "resnet50"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    output_stride: int = 16
    dilation_policy: str = "timm"
    multi_grid: tuple[int, ...] | None = None
    num_classes: int = 21
    in_chans: int = 3
    decoder_channels: int = 256
    low_level_channels: int = 48
    aspp_rates: tuple[int, ...] | None = None
    dropout: float = 0.1
    aux_head: bool = False
    aux_channels: int = 256
    align_corners: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder:
            raise TypeError(f"encoder must be a timm model name (str), got {self.encoder!r}")
        if not isinstance(self.encoder_kwargs, dict):
            raise TypeError(f"encoder_kwargs must be a dict, got {type(self.encoder_kwargs).__name__}")
        if isinstance(self.output_stride, bool) or self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {list(OUTPUT_STRIDES)}, got {self.output_stride!r}")
        _check_choice("dilation_policy", self.dilation_policy, DILATION_POLICIES)
        _check_int("num_classes", self.num_classes, 1)
        _check_int("in_chans", self.in_chans, 1)
        _check_int("decoder_channels", self.decoder_channels, 1)
        _check_int("low_level_channels", self.low_level_channels, 1)
        _check_int("aux_channels", self.aux_channels, 1)
        if self.multi_grid is not None:
            object.__setattr__(self, "multi_grid", tuple(self.multi_grid))
            for d in self.multi_grid:
                _check_int("multi_grid entries", d, 1)
        if self.aspp_rates is not None:
            object.__setattr__(self, "aspp_rates", tuple(self.aspp_rates))
            if not self.aspp_rates:
                raise ValueError("aspp_rates must name at least one rate, got ()")
            for d in self.aspp_rates:
                _check_int("aspp_rates entries", d, 1)
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {self.dropout!r}")
        if not isinstance(self.aux_head, bool):
            raise TypeError(f"aux_head must be a bool, got {self.aux_head!r}")
        if not isinstance(self.align_corners, bool):
            raise TypeError(f"align_corners must be a bool, got {self.align_corners!r}")

    def resolved_aspp_rates(self, output_stride: int | None = None) -> tuple[int, ...]:
        """The ASPP rates in force at `output_stride` (default: the configured one)."""
        if self.aspp_rates is not None:
            return self.aspp_rates
        return DEFAULT_ASPP_RATES[output_stride or self.output_stride]


@dataclass(frozen=True)
class PretrainedCfg(_JsonRecord):
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
    test_mode: str = "whole"
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
        _check_choice("test_mode", self.test_mode, TEST_MODES)
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
        kept = ("mean", "std", "ignore_index", "crop_size", "test_scale", "keep_ratio", "test_mode", "slide_crop")
        kept += ("slide_stride", "tta_ratios", "tta_flip", "align_corners", "license")
        return PretrainedCfg(
            architecture=architecture or self.architecture,
            num_classes=num_classes,
            notes=(
                f"initialised from {origin} ({self.num_classes} classes); classifier re-initialised for "
                f"{num_classes} classes",
            ),
            **{name: getattr(self, name) for name in kept},
        )
