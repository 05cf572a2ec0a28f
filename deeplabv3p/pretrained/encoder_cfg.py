"""What a timm encoder's pretrained weights expect of their input, as `PretrainedCfg` fields.

timm records, for each set of weights, the normalisation they were trained with (``mean`` / ``std`` on the 0..1
scale: ImageNet's for most, 0.5 / 0.5 for xception65 and others) and whether the network only
takes one input size (``fixed_input_size``). A DeepLabV3+ whose encoder starts from those weights has to be fed
the same way, so `create_model(..., encoder_pretrained=True)` copies them into ``model.pretrained_cfg``, which
`predict`, `fit`, `evaluate` and the saved ``config.json`` all read. timm's configs are plain data: reading them
downloads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm.models

from .config import PIXEL_RANGE, PretrainedCfg


def timm_pretrained_cfg(encoder: str, body: Any = None) -> dict[str, Any]:
    """timm's pretrained config of `encoder` as a dict: the one the built trunk `body` carries (it includes any
    ``pretrained_cfg_overlay`` passed through ``encoder_kwargs``), else timm's default for the name."""
    cfg = getattr(body, "pretrained_cfg", None)
    if isinstance(cfg, Mapping) and cfg:
        return dict(cfg)
    default = timm.models.get_pretrained_cfg(encoder)
    if default is None:
        raise ValueError(f"timm has no pretrained config for encoder {encoder!r}: it has no pretrained weights")
    return default.to_dict()


def from_timm(base: PretrainedCfg, timm_cfg: Mapping[str, Any]) -> PretrainedCfg:
    """`base` with the input settings of a timm pretrained config: its mean/std (scaled to 0..255), and for
    encoders that only take one input size, that size as training crop and sliding test window."""
    scale = PIXEL_RANGE[1]
    changes: dict[str, Any] = {  # rounded: 0.224 * 255 is 57.12, not 57.120000000000005, in config.json
        "mean": tuple(round(float(v) * scale, 6) for v in timm_cfg["mean"]),
        "std": tuple(round(float(v) * scale, 6) for v in timm_cfg["std"]),
    }
    name = ".".join(str(part) for part in (timm_cfg.get("architecture"), timm_cfg.get("tag")) if part)
    notes = [f"input mean/std from timm's pretrained config of {name or 'the encoder'}"]
    input_size = timm_cfg.get("input_size")
    if timm_cfg.get("fixed_input_size") and input_size:
        window = (int(input_size[-2]), int(input_size[-1]))
        changes.update(crop_size=window, test=base.test.replace(mode="slide", window=window, stride=None))
        notes.append(f"the encoder takes {window[0]}x{window[1]} (HxW) inputs only: slide inference with that window")
    if base.license is None and timm_cfg.get("license"):
        changes["license"] = str(timm_cfg["license"])
    return base.replace(notes=(*base.notes, *notes), **changes)
