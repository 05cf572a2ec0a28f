"""The command line's argument helpers that need no torch (so that ``--help`` stays fast): ``KEY=VALUE`` model
overrides, ``HxW`` sizes, and flags made from the fields of an options dataclass."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from ..fields import flat_fields


def exported_file(model: str) -> bool:
    """Whether ``--model`` names a file written by ``deeplabv3p export`` (by its format's ending: ``.onnx``,
    ``.xml``, ...) rather than a PyTorch model."""
    from ..deploy.formats import FORMATS

    return any(model.endswith(fmt.suffix) for fmt in FORMATS.values())


def parse_model_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=3", "encoder_kwargs={'channels': (8, 16, 32, 64)}"]`` -> a dict; values are Python
    literals where they parse as one, strings otherwise (timm's ``--model-kwargs`` convention)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-kwargs entries must be KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024); a single number means a square."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW such as 512x1024, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"size must be HxW such as 512x1024, got {text!r}")
    return values


parse_size.separator = "x"  # type: ignore[attr-defined]  # how error messages write a size (deeplabv3p.spelling)


def parse_bands(text: str) -> tuple[int, ...]:
    """``"4,3,2"`` -> (4, 3, 2): 1-based band numbers, as GDAL counts (`deeplabv3p.fields.check_bands`)."""
    from ..fields import check_bands

    try:
        return check_bands("--bands", tuple(int(p) for p in text.split(",")))
    except (TypeError, ValueError) as e:
        message = str(e) if "--bands" in str(e) else f"--bands must be band numbers such as 4,3,2, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


parse_bands.separator = ","  # type: ignore[attr-defined]


# --- flags from dataclass fields ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Flag:
    """How one dataclass field is read from the command line."""

    kwargs: dict[str, Any]
    convert: Callable[[Any], Any]


def _flag(name: str, hint: Any, metadata: Any) -> _Flag:
    """argparse arguments for a field of type `hint` (``X | None`` is read as X: None is the unset default)."""
    args = typing.get_args(hint)
    members = (
        [a for a in args if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else [hint]
    )
    metavar = {"metavar": metadata["metavar"]} if "metavar" in metadata else {}
    literal = next((m for m in members if typing.get_origin(m) is typing.Literal), None)
    if literal is not None:
        return _Flag({"choices": list(typing.get_args(literal))}, lambda v: v)
    if members == [bool]:
        return _Flag({"action": argparse.BooleanOptionalAction}, bool)
    if set(members) == {int, tuple[int, int]}:  # a square side or (h, w)

        def int_or_pair(values: list[int]) -> int | tuple[int, int]:
            if len(values) > 2:
                raise ValueError(f"--{name.replace('_', '-')} takes H or H W, got {values}")
            return values[0] if len(values) == 1 else (values[0], values[1])

        return _Flag({"type": int, "nargs": "+", **metavar}, int_or_pair)
    if len(members) == 1 and typing.get_origin(members[0]) is tuple:
        items = typing.get_args(members[0])
        nargs: int | str = "+" if len(items) == 2 and items[1] is Ellipsis else len(items)
        return _Flag({"type": items[0], "nargs": nargs, **metavar}, tuple)
    if len(members) == 1 and members[0] in (int, float, str):
        return _Flag({"type": members[0], **metavar}, lambda v: v)
    raise TypeError(f"field {name!r} of type {hint} has no command-line form; give it cli=False")


def _flag_help(field: dataclasses.Field) -> str:
    text = field.metadata["help"]
    default = field.default
    if default is None or default is dataclasses.MISSING or "(default" in text:
        return text
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else str(default)
    return f"{text} (default: {shown})"


def _cli_fields(cls: type) -> list[tuple[str, dataclasses.Field, _Flag]]:
    """``(flat name, field, flag)`` of each documented field of `cls`'s flat view (`flat_fields`: a sub-record's
    fields by their flat names, in place of the sub-record)."""
    hints = typing.get_type_hints(cls)
    flags = []
    for flat, (holder, f) in flat_fields(cls).items():
        if f.metadata.get("cli", True) and "help" in f.metadata:
            hint = typing.get_type_hints(hints[holder])[f.name] if holder is not None else hints[f.name]
            flags.append((flat, f, _flag(flat, hint, f.metadata)))
    return flags


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """One flag per documented field of the dataclass `cls`'s flat view: ``--field-name`` (plus its ``aliases``),
    typed from the annotation, the field's help and default. Unset flags stay out of the namespace (see
    `option_values`)."""
    for flat, f, flag in _cli_fields(cls):
        names = ["--" + flat.replace("_", "-"), *f.metadata.get("aliases", ())]
        parser.add_argument(*names, dest=flat, default=argparse.SUPPRESS, help=_flag_help(f), **flag.kwargs)


def option_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` given on the command line by their flat names (`flat_fields`), converted to the field's
    type (the rest keep defaults)."""
    return {flat: flag.convert(getattr(args, flat)) for flat, _, flag in _cli_fields(cls) if hasattr(args, flat)}
