"""Training checkpoints on disk, every one written atomically (temporary name, then rename).

Layout of a run folder::

    OUT/checkpoints/iter_000200/      a model folder (``save_pretrained``) + training_state.pt
    OUT/checkpoints/latest            the name of the newest complete checkpoint
    OUT/best/                         the best model so far: a model folder + metrics.json

Any checkpoint or ``best/`` therefore loads with ``create_model(folder)`` and can be pushed to the Hub as is.
``training_state.pt`` holds only tensors and plain containers (optimizer, scheduler, grad scaler, RNG states,
iteration) and is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atomic import atomic_write_text
from ..pretrained.weights import WEIGHTS_NAME, read_state_dict

if TYPE_CHECKING:
    from ..models.model import DeepLabV3Plus

__all__ = [
    "find_checkpoint",
    "json_safe",
    "read_training_state",
    "save_model",
    "write_best",
    "write_checkpoint",
]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
TRAINING_STATE = "training_state.pt"
METRICS_FILE = "metrics.json"
_PREFIX = "iter_"


def save_model(model: DeepLabV3Plus, folder: Path) -> None:
    """Write `model` as a model folder (``save_pretrained``: config.json, model.safetensors, model card)."""
    model.save_pretrained(folder)


def _publish_folder(tmp: Path, final: Path) -> None:
    """Replace `final` by the complete folder `tmp`; `final` is never seen half-written."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _staging(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp"))


def write_checkpoint(out: Path, iteration: int, model: DeepLabV3Plus, state: dict[str, Any], keep: int = 2) -> Path:
    """Save model and training state as ``OUT/checkpoints/iter_NNNNNN``, point ``latest`` at it and keep the newest
    `keep` checkpoints (all when `keep` <= 0)."""
    root = Path(out) / CHECKPOINTS
    name = f"{_PREFIX}{iteration:06d}"
    tmp = _staging(root, name)
    try:
        save_model(model, tmp)
        torch.save(state, tmp / TRAINING_STATE)
        _publish_folder(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / LATEST, name + "\n")
    if keep > 0:
        for old in _complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def write_best(out: Path, model: DeepLabV3Plus, metrics: dict[str, Any]) -> Path:
    """Save the model as ``OUT/best`` with its ``metrics.json``."""
    final = Path(out) / BEST
    tmp = _staging(final.parent, BEST)
    try:
        save_model(model, tmp)
        (tmp / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8")
        _publish_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def json_safe(value: Any) -> Any:
    """NaN (an undefined per-class metric) becomes null, so the file is standard JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _complete_checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob(f"{_PREFIX}*") if p.is_dir() and (p / TRAINING_STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]) if p.name[len(_PREFIX) :].isdigit() else -1)


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint folder to resume from: `path` itself if it is one, else the newest in the run folder `path`."""
    path = Path(path)
    if (path / TRAINING_STATE).is_file():
        return path
    root = path / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text(encoding="utf-8").strip()
        if (named / TRAINING_STATE).is_file():
            return named
    complete = _complete_checkpoints(root) if root.is_dir() else []
    return complete[-1] if complete else None


def read_training_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(model state dict, training state)`` of a checkpoint folder."""
    state_dict = read_state_dict(folder / WEIGHTS_NAME)
    try:
        state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read the training state in {str(folder)!r}: {e}") from e
    return state_dict, state
