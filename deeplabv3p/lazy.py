"""Packages whose public names load on first access, so that importing one light module (a config, the registry)
does not import torch through its package's ``__init__`` (the command line's ``--help`` and ``list`` stay fast)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package` that imports ``exports[name]`` (a submodule name, relative to
    `package`) when `name` is first read, and keeps the value on the package."""

    def load(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return load
