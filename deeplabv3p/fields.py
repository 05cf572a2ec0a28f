"""Fields of the library's config records, shared by every layer: the argument validators (`check_int`...),
self-documenting dataclass fields (`option`, `documented`, whose help is also the CLI flag's) and `JsonRecord`, the
JSON round trip of every config record the library writes to disk (``config.json``, ``train_config.json``).

A neutral module at the top of the package: it imports nothing of the library, so every layer may import it.
"""

from __future__ import annotations

import dataclasses
import math
import stat
import types
import typing
from dataclasses import MISSING, field
from pathlib import Path
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


def path_kind(path: str | Path) -> str:
    """What is at `path`, for messages that must not say "does not exist" of a path that does: "a folder", "a file",
    "a FIFO", "a socket", "a device", "something" or "nothing"."""
    try:
        mode = Path(path).stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: an ancestor is a file
        return "nothing"
    except OSError:
        return "something unreadable"
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a FIFO")]
    kinds += [(stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")]
    return next((kind for test, kind in kinds if test(mode)), "something")


def absent(path: str | Path, expected: str) -> str:
    """The end of an error about `path` that is not the `expected` thing ("a folder", "a file"): "does not exist",
    or what it is instead ("is a file, not a folder")."""
    kind = path_kind(path)
    return "does not exist" if kind == "nothing" else f"is {kind}, not {expected}"


def check_output_file(name: str, path: str | Path) -> Path:
    """`path` as a Path if a file can be written there: not a folder or other non-file, and no ancestor a file
    (checked before long work, so that it never fails after it with a bare ``[Errno 17]`` / ``[Errno 21]``)."""
    path = Path(path)
    if (kind := path_kind(path)) not in ("nothing", "a file"):
        raise ValueError(f"{name} {str(path)!r} is {kind}; pass the name of a file to write")
    for parent in path.parents:
        if (kind := path_kind(parent)) == "a folder":
            break
        if kind != "nothing":
            raise ValueError(
                f"{name} {str(path)!r} cannot be written: {str(parent)!r} is {kind}, not a folder; pass a path "
                "under a folder"
            )
    return path


def check_file(name: str, path: Any) -> Path:
    """`path` as a Path if it names a regular file; else an error that names `name` and says what the path is
    (missing, a folder, a FIFO...), rather than a misleading "does not exist"."""
    path = Path(path)
    kind = path_kind(path)
    if kind == "nothing":
        raise FileNotFoundError(f"{name} {str(path)!r} does not exist")
    if kind != "a file":
        raise ValueError(f"{name} {str(path)!r} is {kind}, not a file")
    return path


def check_bands(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty sequence of 1-based band numbers (GDAL's numbering: ``(4, 3, 2)`` is NIR-less false colour from
    a Sentinel-2 stack), no band twice, as a tuple; else a TypeError or ValueError in `check_int`'s format."""
    accepted = "a non-empty sequence of band numbers >= 1 (1-based, as GDAL counts), e.g. (4, 3, 2)"
    if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
        raise TypeError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    if min(value) < 1:
        raise ValueError(f"{name} must be {accepted}, got {value!r}: band numbers start at 1")
    if len(set(value)) != len(value):
        raise ValueError(f"{name} must be {accepted}, got {value!r}: a band appears twice")
    return tuple(int(v) for v in value)


def band_counts(in_chans: int) -> tuple[int, ...]:
    """How many bands of a raster or TIFF a model of `in_chans` input channels reads: 1 or 3 for an RGB model (one
    band is repeated as gray), exactly `in_chans` otherwise. The one definition the readers
    (`deeplabv3p.inference.rasters`, `deeplabv3p.inference.images`) and `PretrainedCfg.bands` check against."""
    return (1, 3) if in_chans == 3 else (in_chans,)


def band_counts_text(in_chans: int) -> str:
    """`band_counts` as error messages write it: ``"1 or 3"``, ``"4"``."""
    return " or ".join(str(c) for c in band_counts(in_chans))


def check_band_count(name: str, bands: tuple[int, ...], in_chans: int) -> tuple[int, ...]:
    """`bands` if a model of `in_chans` reads that many (`band_counts`); else a ValueError naming `name`, the bands,
    the counts that fit and the two fixes."""
    if len(bands) not in band_counts(in_chans):
        fit = band_counts_text(in_chans)
        gray = " (one is repeated as gray)" if in_chans == 3 else ""
        raise ValueError(
            f"{name}={bands} selects {len(bands)} band(s) but a model of in_chans={in_chans} reads {fit} bands"
            f"{gray}: choose {fit} bands, or build the model with in_chans={len(bands)}"
        )
    return bands


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **cli: Any) -> Any:
    """A dataclass field that documents itself: `help` is the one description of the field, shown in the class
    docstring (`documented`) and as the help of its command-line flag. `cli` holds flag details for
    ``deeplabv3p.cli.flags.add_options`` (``metavar``, ``aliases``, ``cli=False`` to keep it off the command line)
    and ``flat``: the field's name in the flat view of a record that holds this one (see `flat_fields`).
    """
    metadata = {"help": help, **cli}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_C = TypeVar("_C")


def documented(cls: _C) -> _C:
    """Append an ``Attributes:`` section to a dataclass's docstring, from the ``help`` of each `option` field; the
    fields of a sub-record (a `JsonRecord` field) are listed under it by their flat names (`flat_fields`)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "help" not in f.metadata:
            continue
        lines.append(f"    {f.name}: {f.metadata['help']}")
        sub = record_type(hints[f.name])
        if sub is not None:
            lines += [
                f"        {flat}: {g.metadata['help']}"
                for flat, (_, g) in flat_fields(sub, holder=f.name).items()
                if "help" in g.metadata
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


def record_type(hint: Any) -> type[JsonRecord] | None:
    """The `JsonRecord` class of a field annotated with one (a sub-record), else None."""
    return hint if isinstance(hint, type) and issubclass(hint, JsonRecord) else None


def flat_fields(cls: type, holder: str | None = None) -> dict[str, tuple[str | None, dataclasses.Field[Any]]]:
    """The flat view of a record class: ``{flat name: (sub-record field or None, field)}``.

    A record's own fields keep their names; the fields of its sub-records (fields annotated with a `JsonRecord`
    class) are lifted to the top under their ``flat`` name (`option(flat=...)`, default: their own name). This is
    the view users see: the keyword arguments of `fit`, the ``deeplabv3p train`` flags and the flat layout of
    earlier files. With `holder`, the fields of `cls` as the sub-record held in that field.
    """
    if holder is not None:
        return {f.metadata.get("flat", f.name): (holder, f) for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    view: dict[str, tuple[str | None, dataclasses.Field[Any]]] = {}
    for f in dataclasses.fields(cls):
        sub = record_type(hints[f.name])
        entries = flat_fields(sub, holder=f.name) if sub is not None else {f.name: (None, f)}
        for flat, entry in entries.items():
            if flat in view:
                raise TypeError(f"{cls.__name__}: the flat name {flat!r} is used twice")
            view[flat] = entry
    return view


def flat_values(record: Any) -> dict[str, Any]:
    """The values of the dataclass `record` in its flat view (`flat_fields`): ``{"lr": 0.01, "test_mode": ...}``."""
    return {
        flat: getattr(record if holder is None else getattr(record, holder), f.name)
        for flat, (holder, f) in flat_fields(type(record)).items()
    }


def check_records(record: Any) -> None:
    """A TypeError naming the field when a sub-record field of the dataclass `record` holds anything but its
    record class (a dict from JSON belongs in ``from_dict``; flat names in ``replace``)."""
    hints = typing.get_type_hints(type(record))
    for f in dataclasses.fields(record):
        sub = record_type(hints[f.name])
        value = getattr(record, f.name)
        if sub is not None and not isinstance(value, sub):
            raise TypeError(f"{f.name} must be a {sub.__name__}, got {value!r} ({type(value).__name__})")


def nest(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` in the flat view of `cls` (`flat_fields`), the nested layout, or a mix, as the nested layout: each
    flat name of a sub-record's field moved into that sub-record's dict. Other keys are kept as they are, so that
    `JsonRecord.from_dict` reports unknown ones; a setting given both ways is an error."""
    nested: dict[str, Any] = {}
    view = flat_fields(cls)
    for key, value in data.items():
        holder, f = view.get(key, (None, None))
        if holder is None or f is None:
            if key in nested:  # a sub-record's dict after some of its fields by their flat names
                if not isinstance(value, dict) or set(value) & set(nested[key]):
                    raise ValueError(f"{cls.__name__}: settings of {key!r} are given both by name and inside it")
                value = {**value, **nested[key]}
            nested[key] = value
            continue
        sub = nested.setdefault(holder, {})
        if not isinstance(sub, dict) or f.name in sub:
            raise ValueError(f"{cls.__name__}: {key!r} is given both by name and inside {holder!r}")
        sub[f.name] = value
    return nested


class JsonRecord:
    """JSON round trip shared by the config dataclasses: unknown keys are an error, not silently dropped."""

    if TYPE_CHECKING:  # every subclass is a dataclass; this tells the type checker so
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data; a sub-record as a nested dict."""
        return {
            f.name: value.to_dict() if isinstance(value, JsonRecord) else _listed(value)
            for f in dataclasses.fields(self)
            for value in (getattr(self, f.name),)
        }

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
            sub = record_type(hints[key])
            if sub is not None:
                value = sub.from_dict(value) if not isinstance(value, JsonRecord) else value
            elif _is_tuple_type(hints[key]):
                value = _tupled(value)
            elif isinstance(value, dict):  # e.g. encoder_kwargs={"channels": [8, 16]} from JSON -> (8, 16)
                value = {k: _tupled(v) for k, v in value.items()}
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_flat(cls: type[_Record], data: dict[str, Any]) -> _Record:
        """`from_dict` of data in the flat view (`flat_fields`), the nested layout or a mix (`nest`)."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_flat expects a dict, got {type(data).__name__}")
        return cls.from_dict(nest(cls, data))

    def replace(self: _Record, **changes: Any) -> _Record:
        """A copy with `changes` applied and validated. A sub-record's fields may be changed by their flat names
        (`flat_fields`): ``train_config.replace(test_mode="slide", slide_crop=(512, 512))``."""
        direct: dict[str, Any] = {}
        for key, value in nest(type(self), changes).items():
            current = getattr(self, key, None)
            if isinstance(current, JsonRecord) and isinstance(value, dict):
                value = current.replace(**value)  # the sub-record's other fields are kept
            direct[key] = value
        return dataclasses.replace(self, **direct)


def _is_tuple_type(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(hint))
    return False
