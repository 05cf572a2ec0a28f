"""`create_model`: name -> configs -> network -> weights, the one funnel every model goes through."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .config import ModelConfig, PretrainedCfg
from .model import DeepLabV3Plus
from .registry import get_model_config, get_pretrained_cfg, split_model_name
from .weights import fetch_state_dict, load_into, read_state_dict

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"architecture"}
_DEFAULT_DATASET = "cityscapes"


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".pth", ".pt", ".safetensors", ".bin", ".ckpt"))


def create_model(
    model_name: str,
    pretrained: bool | str = False,
    *,
    checkpoint_path: str | Path | None = None,
    encoder_pretrained: bool = False,
    **kwargs: Any,
) -> DeepLabV3Plus:
    """Build a DeepLabV3+ model, optionally with weights.

    Args:
        model_name: an architecture (``"deeplabv3plus_r50_d8"``, or ``"deeplabv3plus"`` with ``encoder=``), or
            ``"ARCH.TAG"`` naming published weights.
        pretrained: False; True for the tag in `model_name` (or the architecture's best Cityscapes weights);
            a tag or dataset alias (``"cityscapes"``, ``"ade20k_512x512_160k"``); or a local checkpoint path
            (``.safetensors`` or an mmseg ``.pth``).
        checkpoint_path: a local file to load instead of downloading the tag's weights (the tag's metadata is kept).
        encoder_pretrained: initialise the encoder from timm's ImageNet weights (ignored when weights are loaded).
        **kwargs: `ModelConfig` fields overriding the architecture: ``num_classes``, ``in_chans``, ``encoder``,
            ``encoder_kwargs``, ``output_stride``, ``decoder_channels``, ``low_level_channels``, ``aspp_rates``,
            ``aux_head``, ``aux_channels``, ``dropout``, ``align_corners``, ``dilation_policy``, ``multi_grid``.
            A different ``num_classes`` than the weights' re-initialises the classifier for fine-tuning.
    """
    unknown = sorted(set(kwargs) - _CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"create_model() got unknown argument(s) {unknown}; accepted: {sorted(_CONFIG_FIELDS)}")
    if not isinstance(pretrained, bool | str):
        raise TypeError(f"pretrained must be a bool, a tag or a file path, got {type(pretrained).__name__}")
    arch, name_tag = split_model_name(model_name)
    config = get_model_config(arch)

    weights_file: str | Path | None = checkpoint_path
    pretrained_cfg: PretrainedCfg | None = None
    tag = name_tag
    if isinstance(pretrained, str):
        if Path(pretrained).exists() or _looks_like_path(pretrained):
            weights_file = pretrained
        else:
            tag = pretrained
    elif pretrained and tag is None:
        tag = _DEFAULT_DATASET
    if tag is not None and (pretrained or checkpoint_path is not None or name_tag is not None):
        pretrained_cfg = get_pretrained_cfg(arch, tag)
        config = config.replace(num_classes=pretrained_cfg.num_classes, align_corners=pretrained_cfg.align_corners)

    config = config.replace(**kwargs) if kwargs else config
    model = DeepLabV3Plus(config, encoder_pretrained=encoder_pretrained and not (pretrained or weights_file))

    if weights_file is not None:
        state_dict = read_state_dict(weights_file)
    elif pretrained_cfg is not None and pretrained:
        state_dict = fetch_state_dict(pretrained_cfg)
    else:
        state_dict = None
    if state_dict is not None:
        load_into(model, state_dict)

    if pretrained_cfg is None:
        pretrained_cfg = PretrainedCfg(architecture=arch, num_classes=config.num_classes)
    elif pretrained_cfg.num_classes != config.num_classes:
        pretrained_cfg = pretrained_cfg.replace(num_classes=config.num_classes, classes=(), palette=())
    model.pretrained_cfg = pretrained_cfg.replace(align_corners=config.align_corners)
    return model
