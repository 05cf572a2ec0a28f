"""Where `deeplabv3p.deploy.fastest` keeps its exports and decisions, and what a decision is keyed by.

Exports of a model go to ``CACHE/backends/<model fingerprint>/<H>x<W>-v<version>/`` (``CACHE`` is the library's
cache folder, ``$DEEPLABV3P_CACHE``, see `deeplabv3p.pretrained.fetch.cache_dir`); they do not depend on the
machine. A decision (`BackendTable` as JSON) sits beside them as ``decision-<hash>.json``, the hash of its key: the
model fingerprint (config, test settings and every weight), the input size, the library version, this machine
(`machine_record`: CPU model, flags, ISA caps, threads, torch version), the backends considered and the bounds.
Change any of them and the next call measures again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from ..atomic import atomic_write_text
from ..models.digest import state_digest
from ..pretrained.fetch import cache_dir
from ..version import __version__
from .backend_table import BackendTable
from .machine import machine_record
from .metadata import to_json

logger = logging.getLogger("deeplabv3p")


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of the model's config and test settings (its export metadata) and of its weights (`state_digest`)."""
    return hashlib.sha256(f"{to_json(model)} {state_digest(model)}".encode()).hexdigest()


def exports_folder(fingerprint: str, input_size: tuple[int, int], root: Path | None = None) -> Path:
    """The folder of a model's cached exports at one input size (under `root`, default the library cache)."""
    h, w = input_size
    return (root or cache_dir()) / "backends" / fingerprint[:24] / f"{h}x{w}-v{__version__}"


def decision_key(
    fingerprint: str, input_size: tuple[int, int], threads: int, candidates: list[str], bounds: str
) -> dict[str, Any]:
    """Everything a decision depends on (see the module docstring)."""
    return {
        "model": fingerprint,
        "input_size": list(input_size),
        "version": __version__,
        "machine": machine_record(threads),
        "candidates": candidates,
        "bounds": bounds,
    }


def decision_path(folder: Path, key: dict[str, Any]) -> Path:
    """The decision file of `key` in a model's exports `folder`."""
    return folder / f"decision-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]}.json"


def read_decision(path: Path, key: dict[str, Any]) -> BackendTable | None:
    """The cached table at `path` if it exists, parses and was made under `key`; None otherwise (logged)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        return BackendTable.from_dict(data, cached=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.info("ignoring the unreadable backend decision %s (%s): measuring again", path, e)
        return None


def write_decision(path: Path, table: BackendTable) -> None:
    """Store `table` (keyed by ``table.key``) at `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")
