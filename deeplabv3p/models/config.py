"""`ModelConfig`, what a network is, and `JsonRecord`, the JSON round trip every config record of the library uses.

`to_dict` / `from_dict` are the one config format the library writes to disk (``config.json`` next to
``model.safetensors``, a run's ``train_config.json``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

OutputStride = Literal[8, 16, 32]
DilationPolicy = Literal["timm", "mmseg"]
OUTPUT_STRIDES: tuple[OutputStride, ...] = typing.get_args(OutputStride)
DILATION_POLICIES: tuple[DilationPolicy, ...] = typing.get_args(DilationPolicy)

# ASPP rates by output stride when none are given: DeepLab's (6, 12, 18) at stride 16, doubled at 8, halved at 32.
DEFAULT_ASPP_RATES: dict[OutputStride, tuple[int, ...]] = {8: (1, 12, 24, 36), 16: (1, 6, 12, 18), 32: (1, 3, 6, 9)}


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")


def check_pair(name: str, value: Any) -> tuple[int, int]:
    """A positive int (a square) or a pair (h, w) of positive ints, as an (h, w) tuple."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        raise ValueError(f"{name} must be a positive int or a pair (h, w) of positive ints, got {value!r}")
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
        if isinstance(self.output_stride, bool) or self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {list(OUTPUT_STRIDES)}, got {self.output_stride!r}")
        check_choice("dilation_policy", self.dilation_policy, DILATION_POLICIES)
        check_int("num_classes", self.num_classes, 1)
        check_int("in_chans", self.in_chans, 1)
        check_int("decoder_channels", self.decoder_channels, 1)
        check_int("low_level_channels", self.low_level_channels, 1)
        check_int("aux_channels", self.aux_channels, 1)
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
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {self.dropout!r}")
        if not isinstance(self.aux_head, bool):
            raise TypeError(f"aux_head must be a bool, got {self.aux_head!r}")
        if not isinstance(self.align_corners, bool):
            raise TypeError(f"align_corners must be a bool, got {self.align_corners!r}")

    def resolved_aspp_rates(self, output_stride: OutputStride | None = None) -> tuple[int, ...]:
        """The ASPP rates in force at `output_stride` (default: the configured one)."""
        if self.aspp_rates is not None:
            return self.aspp_rates
        return DEFAULT_ASPP_RATES[output_stride or self.output_stride]
