"""What every exported file carries besides the graph: the model's config and test-time settings.

It is the content of a saved model's ``config.json`` (`deeplabv3p.pretrained.saved.config_dict`), stored in the
format's own metadata slot where it has one (ONNX ``metadata_props``, OpenVINO ``rt_info``, Core ML
``user_defined_metadata``) and otherwise in a sidecar file ``NAME.EXT.json`` beside the export (`sidecar`), so that
``deeplabv3p.deploy.load(path).predict(image)`` segments with the settings ``model.predict(image)`` uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg, pretrained_cfg_for
from ..pretrained.saved import config_dict, parse_config

KEY = "deeplabv3p.config"  # the metadata key (ONNX metadata_props, OpenVINO rt_info, Core ML user metadata)


def model_config(model: nn.Module) -> ModelConfig:
    """The `ModelConfig` of a deeplabv3p model, or a TypeError for any other module."""
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(
            f"model must be a deeplabv3p model (with a ModelConfig in .config), got {type(model).__name__}: "
            "create it with deeplabv3p.create_model"
        )
    return config


def to_json(model: nn.Module) -> str:
    """The model's config and test-time settings as the JSON text every export stores."""
    config = model_config(model)
    return json.dumps(config_dict(config, pretrained_cfg_for(config, getattr(model, "pretrained_cfg", None))))


def from_json(text: str | None, origin: str) -> tuple[ModelConfig, PretrainedCfg]:
    """Parse stored metadata (`to_json`'s text) read from `origin`; None means the file has none."""
    if text is None:
        raise ValueError(
            f"{origin} has no deeplabv3p metadata (exported by another tool or an older deeplabv3p): pass "
            "config=ModelConfig(...) and pretrained_cfg=PretrainedCfg(...) when loading it, or export it again"
        )
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{origin}: the deeplabv3p metadata is not valid JSON ({e}); export the model again") from None
    return parse_config(data, origin=origin)


def sidecar(path: str | Path) -> Path:
    """The metadata file of an export whose format has no metadata slot: ``NAME.EXT.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | Path) -> str | None:
    """The text of `path`'s sidecar, or None when there is none."""
    side = sidecar(path)
    return side.read_text(encoding="utf-8") if side.is_file() else None
