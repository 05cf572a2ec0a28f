"""Class names and palettes: checked when given, or read from a dataset's ``classes.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..fields import check_int
from ..inference.result import default_class_names

__all__ = ["CLASSES_FILE", "check_classes", "check_palette", "read_classes_file"]

CLASSES_FILE = "classes.json"


def check_classes(classes: Any, source: str) -> tuple[str, ...]:
    """Class names from a list of names or a class count (``class_0``, ...); `source` names where they came from."""
    if isinstance(classes, int) and not isinstance(classes, bool):
        return default_class_names(check_int("classes", classes, 1))
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise ValueError(f"{source}: classes must be a non-empty list of names (or a class count), got {classes!r}")
    if not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{source}: every class name must be a str, got {list(classes)!r}")
    duplicates = sorted({c for c in classes if list(classes).count(c) > 1})
    if duplicates:
        raise ValueError(f"{source}: class names must be unique, repeated: {duplicates}")
    return tuple(classes)


def check_palette(palette: Any, num_classes: int, source: str) -> tuple[tuple[int, int, int], ...]:
    """One ``(r, g, b)`` per class, or ``()`` for none."""
    if palette is None or (isinstance(palette, Sequence) and len(palette) == 0):
        return ()
    ok = isinstance(palette, Sequence) and all(
        isinstance(c, Sequence) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in palette
    )
    if not ok:
        raise ValueError(f"{source}: palette must be a list of [r, g, b] integer triples in 0..255, got {palette!r}")
    if len(palette) != num_classes:
        raise ValueError(f"{source}: palette has {len(palette)} colours for {num_classes} classes")
    return tuple(tuple(c) for c in palette)


def read_classes_file(path: str | Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and palette from ``classes.json``: a list of names, or ``{"classes": [...], "palette": [...]}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; write the class names there as a JSON list, "
            'e.g. ["background", "road"], or pass classes= explicitly'
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"classes", "palette"})
        if unknown or "classes" not in data:
            raise ValueError(f"{str(path)!r}: expected keys 'classes' and optionally 'palette', got {sorted(data)}")
        classes = check_classes(data["classes"], str(path))
        return classes, check_palette(data.get("palette"), len(classes), str(path))
    return check_classes(data, str(path)), ()
