"""Load the mmseg parity goldens (tests/data/parity, copied from ../shared/parity) as narrow deeplabv3p models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import deeplabv3p
from deeplabv3p.pretrained.state_dict import load_into, read_state_dict

PARITY = Path(__file__).parent / "data" / "parity"
CASES = ("r18_v1c_d8", "r50_v1c_d8", "r101_v1c_d16_mg124", "r50_v1b_d8_align_corners", "r18_v1b_d8_slide")

_ARCH = {
    (18, "v1c", 8): "deeplabv3plus_r18_d8",
    (50, "v1c", 8): "deeplabv3plus_r50_d8",
    (101, "v1c", 16): "deeplabv3plus_r101_d16_mg124",
    (18, "v1b", 8): "deeplabv3plus_r18b_d8",
    (50, "v1b", 8): "deeplabv3plus_r50b_d8",
}


def case_info(name: str) -> dict:
    return json.loads((PARITY / f"{name}.json").read_text())


def arrays(name: str) -> dict[str, torch.Tensor]:
    with np.load(PARITY / f"{name}.npz") as npz:
        return {k: torch.from_numpy(npz[k]) for k in npz.files}


def model_kwargs(name: str) -> tuple[str, dict]:
    """Architecture name and create_model overrides that give the case's narrow network."""
    info = case_info(name)
    encoder_kwargs: dict = {"channels": (8, 16, 32, 64)}
    if info["variant"] == "v1c":
        encoder_kwargs.update(stem_type="deep", stem_width=info["stem_channels"] // 2)
    arch = _ARCH[(info["depth"], info["variant"], info["output_stride"])]
    return arch, dict(
        num_classes=info["num_classes"],
        encoder_kwargs=encoder_kwargs,
        decoder_channels=info["channels"],
        low_level_channels=info["c1_channels"],
        aux_channels=info["aux_channels"],
        align_corners=info["align_corners"],
    )


def build(name: str, checkpoint: Path | None = None) -> deeplabv3p.DeepLabV3Plus:
    """The golden's network with the golden's weights loaded, in eval mode."""
    arch, kwargs = model_kwargs(name)
    model = deeplabv3p.create_model(arch, **kwargs)
    load_into(model, read_state_dict(checkpoint or PARITY / f"{name}.safetensors"))
    return model.eval()


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max abs difference relative to the expected tensor's scale (the goldens' tolerance measure)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return ((actual - expected).abs().max() / expected.abs().max()).item()
