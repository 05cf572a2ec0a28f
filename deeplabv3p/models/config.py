"""`ModelConfig`: what a network is, everything needed to build it and nothing about weights."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..fields import JsonRecord, check_bool, check_choice, check_float, check_int
from ..spelling import Placeholder, arg

OutputStride = Literal[8, 16, 32]
DilationPolicy = Literal["timm", "mmseg"]
OUTPUT_STRIDES: tuple[OutputStride, ...] = typing.get_args(OutputStride)
DILATION_POLICIES: tuple[DilationPolicy, ...] = typing.get_args(DilationPolicy)

# Label maps are written as 8- or 16-bit PNGs: more classes than 16 bits can index is a mistake, not a model.
MAX_CLASSES = 2**16
# Far wider than any DeepLabV3+ (256-512 channels, 3-13 input bands): a larger width is a typo whose weights would
# exhaust the memory (or have the process killed) before any error could be raised.
MAX_CHANNELS = 4096
# timm.create_model arguments the encoder sets itself, and the ModelConfig field or create_model argument to use
# (spelt as the flag under the command line), or what to do instead.
RESERVED_ENCODER_KWARGS: dict[str, tuple[str, Any] | str] = {
    "pretrained": ("encoder_pretrained", True),
    "features_only": "nothing (the encoder is always a features_only trunk)",
    "in_chans": ("in_chans", Placeholder("N")),
    "output_stride": ("output_stride", Placeholder("N")),
    "checkpoint_path": ("checkpoint_path", Placeholder("FILE")),
}

# ASPP rates by output stride when none are given: DeepLab's (6, 12, 18) at stride 16, doubled at 8, halved at 32.
DEFAULT_ASPP_RATES: dict[OutputStride, tuple[int, ...]] = {8: (1, 12, 24, 36), 16: (1, 6, 12, 18), 32: (1, 3, 6, 9)}


@dataclass(frozen=True)
class ModelConfig(JsonRecord):
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
    output_stride: OutputStride = 16
    dilation_policy: DilationPolicy = "timm"
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
        for key in self.encoder_kwargs:
            if not isinstance(key, str):
                raise TypeError(f"encoder_kwargs keys must be str (timm.create_model arguments), got {key!r}")
            if key in RESERVED_ENCODER_KWARGS:
                instead = RESERVED_ENCODER_KWARGS[key]
                raise ValueError(
                    f"encoder_kwargs may not set {key!r}: deeplabv3p sets it itself; use "
                    f"{instead if isinstance(instead, str) else arg(*instead)} instead"
                )
        check_choice("output_stride", self.output_stride, OUTPUT_STRIDES)
        check_choice("dilation_policy", self.dilation_policy, DILATION_POLICIES)
        check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        check_int("in_chans", self.in_chans, 1, MAX_CHANNELS)
        check_int("decoder_channels", self.decoder_channels, 1, MAX_CHANNELS)
        check_int("low_level_channels", self.low_level_channels, 1, MAX_CHANNELS)
        check_int("aux_channels", self.aux_channels, 1, MAX_CHANNELS)
        for name in ("multi_grid", "aspp_rates"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple | list):
                raise TypeError(f"{name} must be a tuple of ints or None, got {value!r}")
        if self.multi_grid is not None:
            object.__setattr__(self, "multi_grid", tuple(self.multi_grid))
            for d in self.multi_grid:
                check_int("multi_grid entries", d, 1)
        if self.aspp_rates is not None:
            object.__setattr__(self, "aspp_rates", tuple(self.aspp_rates))
            if not self.aspp_rates:
                raise ValueError("aspp_rates must name at least one rate, got ()")
            for d in self.aspp_rates:
                check_int("aspp_rates entries", d, 1)
        check_float("dropout", self.dropout, 0.0, 1.0, max_open=True)
        check_bool("aux_head", self.aux_head)
        check_bool("align_corners", self.align_corners)

    def resolved_aspp_rates(self, output_stride: OutputStride | None = None) -> tuple[int, ...]:
        """The ASPP rates in force at `output_stride` (default: the configured one)."""
        if self.aspp_rates is not None:
            return self.aspp_rates
        return DEFAULT_ASPP_RATES[output_stride or self.output_stride]
