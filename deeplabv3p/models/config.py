"""`ModelConfig`, what a network is, and `JsonRecord`, the JSON round trip every config record of the library uses.

`to_dict` / `from_dict` are the one config format the library writes to disk (``config.json`` next to
``model.safetensors``, a run's ``train_config.json``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

OutputStride = Literal[8, 16, 32]
DilationPolicy = Literal["timm", "mmseg"]
OUTPUT_STRIDES: tuple[OutputStride, ...] = typing.get_args(OutputStride)
DILATION_POLICIES: tuple[DilationPolicy, ...] = typing.get_args(DilationPolicy)

# Label maps are written as 8- or 16-bit PNGs: more classes than 16 bits can index is a mistake, not a model.
MAX_CLASSES = 2**16
# Far wider than any DeepLabV3+ (256-512 channels, 3-13 input bands): a larger width is a typo whose weights would
# exhaust the memory (or have the process killed) before any error could be raised.
MAX_CHANNELS = 4096
# timm.create_model arguments the encoder sets itself, and the ModelConfig field (or create_model argument) to use.
RESERVED_ENCODER_KWARGS = {
    "pretrained": "create_model(..., encoder_pretrained=True)",
    "features_only": "nothing (the encoder is always a features_only trunk)",
    "in_chans": "in_chans=",
    "output_stride": "output_stride=",
    "checkpoint_path": "create_model(..., checkpoint_path=...) for the whole model's weights",
}

# ASPP rates by output stride when none are given: DeepLab's (6, 12, 18) at stride 16, doubled at 8, halved at 32.
DEFAULT_ASPP_RATES: dict[OutputStride, tuple[int, ...]] = {8: (1, 12, 24, 36), 16: (1, 6, 12, 18), 32: (1, 3, 6, 9)}


def _interval(minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if min_open else '['}{minimum:g}, {maximum:g}{')' if max_open else ']'}"
    if minimum is not None:
        return f"{'>' if min_open else '>='} {minimum:g}"
    if maximum is not None:
        return f"{'<' if max_open else '<='} {maximum:g}"
    return ""


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` if it is an int (not a bool) and at least `minimum`; else a TypeError or ValueError that names
    `name`, shows the value and says what is accepted. The library's one int check."""
    accepted = f"an int {_interval(minimum, maximum, False, False)}".rstrip()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return value


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
) -> float:
    """`value` as a float if it is a number (not a bool) within the bounds (`min_open` / `max_open`: the bound
    itself is excluded); else a TypeError or ValueError in `check_int`'s format. NaN and infinities are refused."""
    accepted = f"a finite number {_interval(minimum, maximum, min_open, max_open)}".rstrip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    low_ok = minimum is None or (value > minimum if min_open else value >= minimum)
    high_ok = maximum is None or (value < maximum if max_open else value <= maximum)
    if not (low_ok and high_ok and math.isfinite(value)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a bool; else a TypeError in `check_int`'s format (1, 0 and "yes" are not bools)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__})")
    return value


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """`value` if it is one of `choices`; else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_pair(name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """An int or an ``(h, w)`` pair of ints, each at least `minimum`, as a tuple ``(h, w)``; else a TypeError (not
    ints) or ValueError (not two, or too small) in `check_int`'s format."""
    accepted = f"an int >= {minimum} or a pair (h, w) of them"
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, tuple | list) or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
        raise TypeError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    if len(pair) != 2 or min(pair) < minimum:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return int(pair[0]), int(pair[1])


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **cli: Any) -> Any:
    """A dataclass field that documents itself: `help` is the one description of the field, shown in the class
    docstring (`documented`) and as the help of its command-line flag. `cli` holds flag details for
    ``deeplabv3p.cli.common.add_options`` (``metavar``, ``aliases``, ``cli=False`` to keep it off the command line).
    """
    metadata = {"help": help, **cli}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_C = TypeVar("_C")


def documented(cls: _C) -> _C:
    """Append an ``Attributes:`` section to a dataclass's docstring, from the ``help`` of each `option` field."""
    lines = [
        f"    {f.name}: {f.metadata['help']}"
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if "help" in f.metadata
    ]
    if lines:
        doc = (cls.__doc__ or "").rstrip()
        cls.__doc__ = doc + "\n\n    Attributes:\n" + "\n".join("    " + line for line in lines) + "\n"
    return cls


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


_Record = TypeVar("_Record", bound="JsonRecord")


class JsonRecord:
    """JSON round trip shared by the config dataclasses: unknown keys are an error, not silently dropped."""

    if TYPE_CHECKING:  # every subclass is a dataclass; this tells the type checker so
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _listed(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[_Record], data: dict[str, Any]) -> _Record:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
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

    def replace(self: _Record, **changes: Any) -> _Record:
        """A copy with `changes` applied and validated."""
        return dataclasses.replace(self, **changes)


def _is_tuple_type(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(hint))
    return False


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
                raise ValueError(
                    f"encoder_kwargs may not set {key!r}: deeplabv3p sets it itself; use "
                    f"{RESERVED_ENCODER_KWARGS[key]} instead"
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
