"""Fields of the library's config records, shared by every layer: the argument validators (`check_int`...),
self-documenting dataclass fields (`option`, `documented`, whose help is also the CLI flag's) and `JsonRecord`, the
JSON round trip of every config record the library writes to disk (``config.json``, ``train_config.json``).

A neutral module at the top of the package: it imports nothing of the library, so every layer may import it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar


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
