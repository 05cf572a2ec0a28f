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
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atomic import atomic_folder, atomic_write_text, remove_stale
from ..pretrained.saved import save_pretrained
from ..pretrained.state_dict import WEIGHTS_NAME, read_state_dict, torch_load

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork

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


def save_model(model: DeepLabV3PlusNetwork, folder: Path) -> None:
    """Write `model` as a model folder (``save_pretrained``: config.json, model.safetensors, model card)."""
    save_pretrained(model, folder)


def write_checkpoint(
    out: Path, iteration: int, model: DeepLabV3PlusNetwork, state: dict[str, Any], keep: int = 2
) -> Path:
    """Save model and training state as ``OUT/checkpoints/iter_NNNNNN``, point ``latest`` at it and keep the newest
    `keep` checkpoints (all when `keep` <= 0)."""
    root = Path(out) / CHECKPOINTS
    name = f"{_PREFIX}{iteration:06d}"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)  # staging folders of a run that was killed
    with atomic_folder(root / name) as tmp:
        save_model(model, tmp)
        torch.save(state, tmp / TRAINING_STATE)
    atomic_write_text(root / LATEST, name + "\n")
    if keep > 0:
        for old in _complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def write_best(out: Path, model: DeepLabV3PlusNetwork, metrics: dict[str, Any]) -> Path:
    """Save the model as ``OUT/best`` with its ``metrics.json``."""
    final = Path(out) / BEST
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, [BEST])
    with atomic_folder(final) as tmp:
        save_model(model, tmp)
        (tmp / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2) + "\n", encoding="utf-8")
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
    state = torch_load(folder / TRAINING_STATE, "a training state (deeplabv3p checkpoint)")
    if not isinstance(state, dict) or not {"iteration", "optimizer", "scheduler", "config"} <= set(state):
        raise ValueError(
            f"{str(folder / TRAINING_STATE)!r} is not a deeplabv3p training state (expected a dict with iteration, "
            "optimizer, scheduler and config)"
        )
    return state_dict, state
