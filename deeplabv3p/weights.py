"""The one weights-loading path: read a checkpoint (ours or mmseg's) and load it into a model with checks.

Files are read without executing code: safetensors, or ``torch.load(weights_only=True)`` for ``.pth``.
mmseg checkpoints are recognised by their keys and converted (`convert.py`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn

from .config import PretrainedCfg
from .convert import convert_mmseg_state_dict, is_mmseg_state_dict

_logger = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("classifier.", "aux_head.classifier.")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth`` checkpoint into our key layout (mmseg checkpoints are converted).

    A ``.pth`` may be a bare state dict or mmseg's ``{'meta': ..., 'state_dict': ...}`` container.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        state_dict = load_file(str(path))
    elif path.suffix in TORCH_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"could not read {str(path)!r} as a PyTorch checkpoint with weights_only=True ({e}). "
                "Checkpoints that need arbitrary code to unpickle are refused."
            ) from e
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


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> LoadReport:
    """Copy `state_dict` into `model`, failing loudly on anything that does not fit.

    Allowed differences, each reported: a classifier whose class count differs is left freshly initialised
    (fine-tuning, with a warning); a first conv trained on 3 channels is adapted to the model's ``in_chans`` as timm
    does; auxiliary-head weights are dropped when the model has no auxiliary head. Any other missing,
    unexpected or mis-shaped key raises a ValueError that lists them.
    """
    report = LoadReport()
    own = model.state_dict()
    state_dict = dict(state_dict)
    if getattr(model, "aux_head", "absent") is None:
        report.dropped = sorted(k for k in state_dict if k.startswith("aux_head."))
        for k in report.dropped:
            del state_dict[k]
    first_conv = next(k for k, v in own.items() if v.dim() == 4)
    mismatched = []
    for key, value in list(state_dict.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        target = own[key]
        if key.startswith(CLASSIFIER_PREFIXES):
            report.reinitialized.append(key)
            del state_dict[key]
        elif key == first_conv and _differs_in_input_channels(value, target):
            state_dict[key] = adapt_input_conv(target.shape[1], value)
            report.adapted.append(key)
        else:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}")
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
        raise ValueError(
            "checkpoint does not fit the model; does the architecture match the weights?\n  " + "\n  ".join(lines)
        )
    model.load_state_dict(state_dict, strict=False)
    if report.reinitialized:
        warnings.warn(
            f"class count differs from the checkpoint: {report.reinitialized} left freshly initialised "
            "(expected when fine-tuning on new classes)",
            stacklevel=3,
        )
    if report.adapted:
        _logger.info("adapted input conv(s) %s to in_chans", report.adapted)
    if report.dropped:
        _logger.info("dropped %d auxiliary-head weights (model built without aux head)", len(report.dropped))
    return report


def fetch_state_dict(pretrained_cfg: PretrainedCfg) -> dict[str, torch.Tensor]:
    """The weights of a published tag, from the Hub or the original mmseg checkpoint."""
    raise RuntimeError(
        f"downloading {pretrained_cfg.name!r} is not available in this build; download "
        f"{pretrained_cfg.url} by hand and pass checkpoint_path="
    )
