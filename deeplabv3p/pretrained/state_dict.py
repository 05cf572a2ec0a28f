"""A state dict on disk and in a model: read one (ours or mmseg's), fit it into a model with checks, write one.

Files are read without executing code: safetensors, or ``torch.load(weights_only=True)`` for ``.pth``. mmseg
checkpoints are recognised by their keys and converted (`convert.py`). Writing goes to a temporary name that is
then renamed, so a failed write never leaves a file that looks complete. Where weights come from (a tag, the Hub,
a folder, a file) is decided by `source.resolve_source`; fetching a published tag's file is `fetch.py`'s job.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.models import adapt_input_conv
from torch import nn

from ..atomic import atomic_path
from ..fields import absent
from ..spelling import arg
from .convert import convert_mmseg_state_dict, is_mmseg_state_dict

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CLASSIFIER_PREFIXES = ("classifier.", "aux_head.classifier.")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Every file suffix `read_state_dict` reads.
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)


def _torch_load_failure(path: Path, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused `path`, in one line (torch's own text advises unsafe loading)."""
    text = str(error)
    unsafe = re.search(r"unsupported GLOBAL (\S+)", text, flags=re.IGNORECASE)
    if unsafe:
        return (
            f"it holds a pickled Python object ({unsafe[1]}) besides tensors and plain containers, and deeplabv3p "
            "never unpickles code; convert it to .safetensors where it was made, or re-save only its state_dict"
        )
    if path.stat().st_size == 0:
        return "the file is empty"
    if isinstance(error, EOFError):
        return "the file ends early (truncated?); download or copy it again"
    if "PytorchStreamReader" in text or "zip archive" in text:
        return "it is damaged or truncated (not a readable torch.save zip archive); download or copy it again"
    return "it is not a file written by torch.save (or it is damaged)"


def torch_load(path: str | Path, what: str = "a PyTorch checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: runs no code, and any failure is a ValueError naming the
    file and the reason."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"cannot read {str(path)!r} as {what}: {_torch_load_failure(path, e)}. Files are read with "
            "torch.load(weights_only=True), which loads tensors and plain containers only."
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except SafetensorError as e:
        reason = "the file is empty" if path.stat().st_size == 0 else f"{e}"
        raise ValueError(
            f"cannot read {str(path)!r} as safetensors: {reason}. The file is damaged, truncated or not a "
            "safetensors file; download or copy it again."
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth`` checkpoint, or a saved folder, into our key layout.

    A ``.pth`` may be a bare state dict or mmseg's ``{'meta': ..., 'state_dict': ...}`` container; mmseg checkpoints
    are converted. A folder (as written by ``save_pretrained``) is read through its ``model.safetensors``.
    A file that cannot be read is a ValueError naming it.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"folder {str(path)!r} has no {WEIGHTS_NAME}; is it a save_pretrained() folder?")
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} {absent(path, 'a file')}")
    if path.suffix == ".safetensors":
        state_dict = _read_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        obj = torch_load(path)
        state_dict = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
        if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise ValueError(f"{str(path)!r} holds no state dict of tensors (found {type(state_dict).__name__})")
    else:
        raise ValueError(
            f"unsupported checkpoint file {str(path)!r}: expected .safetensors or one of {list(TORCH_SUFFIXES)}"
        )
    if is_mmseg_state_dict(state_dict):
        state_dict = convert_mmseg_state_dict(state_dict)
    return state_dict


def _differs_in_input_channels(value: torch.Tensor, target: torch.Tensor) -> bool:
    return (
        value.dim() == 4
        and target.dim() == 4
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
    )


@dataclass
class LoadReport:
    """What `load_into` did beyond a plain copy."""

    reinitialized: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def load_into(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    new_classes: bool = False,
    adapt_in_chans: bool = False,
    drop_aux: bool = False,
) -> LoadReport:
    """Copy `state_dict` into `model`: every key must be there with its shape, except where the caller allows.

    Args:
        new_classes: a classifier whose class count differs is left freshly initialised (fine-tuning on new
            classes, with a warning).
        adapt_in_chans: a first conv trained on another number of input channels is adapted to the model's
            ``in_chans`` as timm does.
        drop_aux: auxiliary-head weights are dropped when the model has no auxiliary head.

    Any other missing, unexpected or mis-shaped key raises a ValueError that lists them with their shapes.
    """
    report = LoadReport()
    own = model.state_dict()
    state_dict = dict(state_dict)
    if drop_aux and getattr(model, "aux_head", "absent") is None:
        report.dropped = sorted(k for k in state_dict if k.startswith("aux_head."))
        for k in report.dropped:
            del state_dict[k]
    first_conv = next(k for k, v in own.items() if v.dim() == 4)
    mismatched, classifiers = [], []
    for key, value in list(state_dict.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        target = own[key]
        if key.startswith(CLASSIFIER_PREFIXES) and new_classes:
            report.reinitialized.append(key)
            del state_dict[key]
        elif key == first_conv and adapt_in_chans and _differs_in_input_channels(value, target):
            state_dict[key] = adapt_input_conv(target.shape[1], value)
            report.adapted.append(key)
        else:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}")
            if key.startswith(CLASSIFIER_PREFIXES):
                classifiers.append((value.shape[0], target.shape[0]))
    missing = sorted(set(own) - set(state_dict) - set(report.reinitialized))
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or missing or unexpected:
        lines = []
        if mismatched:
            lines.append(f"shape mismatch ({len(mismatched)}): {mismatched[:10]}")
        if missing:
            lines.append(f"missing from the checkpoint ({len(missing)}): {missing[:10]}")
        if unexpected:
            lines.append(f"not in the model ({len(unexpected)}): {unexpected[:10]}")
        if classifiers and len(mismatched) == len(classifiers):
            theirs, ours = classifiers[0]
            lines.append(
                f"the checkpoint predicts {theirs} classes and the model {ours}: pass {arg('num_classes', theirs)} to "
                f"load it as it is, or {arg('num_classes', ours)} explicitly to fine-tune with a freshly initialised "
                "classifier"
            )
        raise ValueError(
            "checkpoint does not fit the model; does the architecture match the weights?\n  " + "\n  ".join(lines)
        )
    model.load_state_dict(state_dict, strict=False)
    if report.reinitialized:
        warnings.warn(
            f"class count differs from the checkpoint: {report.reinitialized} left freshly initialised "
            "(expected when fine-tuning on new classes)",
            stacklevel=4,  # load_into <- build_model <- create_model <- the caller
        )
    if report.adapted:
        _logger.info("adapted input conv(s) %s to in_chans", report.adapted)
    if report.dropped:
        _logger.info("dropped %d auxiliary-head weights (model built without aux head)", len(report.dropped))
    return report


def save_state_dict(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write `state_dict` as safetensors to `path` atomically (temporary name in the same folder, then rename).

    A failed write (disk full, no permission) is an OSError naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
        except SafetensorError as e:  # safetensors reports I/O failures as its own error type
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise OSError(f"cannot write {str(path)!r}: {e}") from e
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from e
    return path
