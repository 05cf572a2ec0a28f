"""`create_model`: name -> configs -> network -> weights, the one funnel every model goes through."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..models.config import ModelConfig
from ..models.model import DeepLabV3Plus
from .config import PretrainedCfg, pretrained_cfg_for
from .encoder_cfg import from_timm, timm_pretrained_cfg
from .hub import is_hub_id, read_config, source_file
from .registry import get_model_config, get_pretrained_cfg, list_models, split_model_name
from .weights import WEIGHTS_NAME, fetch_state_dict, load_into, read_state_dict

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"architecture"}
# PretrainedCfg fields create_model takes as keywords: the input statistics, one value per band.
_INPUT_FIELDS = {"mean", "std"}
_DEFAULT_DATASET = "cityscapes"

# (architecture config, weights metadata, where the weights are: a local path, a tag to fetch, or none)
_Source = tuple[ModelConfig, PretrainedCfg | None, str | Path | PretrainedCfg | None]


def looks_like_path(value: str) -> bool:
    """A `pretrained` string that names a file rather than a tag."""
    return "/" in value or "\\" in value or value.endswith((".pth", ".pt", ".safetensors", ".bin", ".ckpt"))


def _is_saved_source(name: str) -> bool:
    """A Hub id, or an existing folder whose name is not also an architecture (registry names win)."""
    if is_hub_id(name):
        return True
    return Path(name).is_dir() and split_model_name(name)[0] not in list_models()


def create_model(
    model_name: str | Path,
    pretrained: bool | str | Path | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    encoder_pretrained: bool = False,
    **kwargs: Any,
) -> DeepLabV3Plus:
    """Build a DeepLabV3+ model, optionally with weights.

    Args:
        model_name: an architecture (``"deeplabv3plus_r50_d8"``, or ``"deeplabv3plus"`` with ``encoder=``);
            ``"ARCH.TAG"`` naming published weights; a folder written by ``save_pretrained``; or a Hub repo in the
            same format, ``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"``.
        pretrained: for an architecture or tag: False/None (no weights), True (the tag in `model_name`, or the
            architecture's best Cityscapes weights), a tag or dataset alias (``"cityscapes"``,
            ``"ade20k_512x512_160k"``), or a local checkpoint (``.safetensors``, an mmseg ``.pth``, or a saved
            folder). For a saved folder or Hub repo: None/True loads its weights, False builds it untrained.
        checkpoint_path: a local file (or saved folder) to load instead of downloading; the metadata of the tag or
            saved model is kept.
        encoder_pretrained: initialise the encoder from timm's pretrained weights (ignored when weights are loaded);
            ``model.pretrained_cfg`` then takes those weights' mean/std (and, for encoders of one fixed input
            size, that size as crop and slide window) from timm's pretrained config.
        **kwargs: ``mean`` / ``std``, the input statistics on the 0..255 scale, one value per input band (default:
            the weights', RGB values cycled over ``in_chans`` bands); and `ModelConfig` fields overriding the
            architecture: ``num_classes``, ``in_chans``, ``encoder``,
            ``encoder_kwargs``, ``output_stride``, ``decoder_channels``, ``low_level_channels``, ``aspp_rates``,
            ``aux_head``, ``aux_channels``, ``dropout``, ``align_corners``, ``dilation_policy``, ``multi_grid``.
            A ``num_classes`` given here that differs from the weights' re-initialises the classifier for
            fine-tuning (with a warning); an ``in_chans`` given here adapts the first conv as timm does. Without
            them, weights of another class count or input width are an error, and a saved folder's own weights
            must match its config exactly.
    """
    if not isinstance(model_name, str | Path) or not str(model_name):
        raise TypeError(
            "model_name must be a non-empty str or Path: an architecture (deeplabv3p.list_models()), ARCH.TAG, a "
            f"folder written by save_pretrained() or 'hf-hub:ORG/NAME'; got {model_name!r} "
            f"({type(model_name).__name__})"
        )
    if checkpoint_path is not None and not isinstance(checkpoint_path, str | Path):
        raise TypeError(f"checkpoint_path must be a file path (str or Path), got {type(checkpoint_path).__name__}")
    if not isinstance(encoder_pretrained, bool):
        raise TypeError(f"encoder_pretrained must be a bool, got {encoder_pretrained!r}")
    unknown = sorted(set(kwargs) - _CONFIG_FIELDS - _INPUT_FIELDS)
    if unknown:
        accepted = sorted(_CONFIG_FIELDS | _INPUT_FIELDS)
        raise TypeError(f"create_model() got unknown argument(s) {unknown}; accepted: {accepted}")
    statistics = {name: kwargs.pop(name) for name in _INPUT_FIELDS & set(kwargs)}
    if pretrained is not None and not isinstance(pretrained, bool | str | Path):
        raise TypeError(f"pretrained must be a bool, a tag or a file path, got {type(pretrained).__name__}")
    if isinstance(model_name, Path):
        model_name = str(model_name)
    saved = _is_saved_source(model_name)
    if saved:
        config, pretrained_cfg, weights_file = _from_saved(model_name, pretrained, checkpoint_path)
    else:
        config, pretrained_cfg, weights_file = _from_registry(model_name, pretrained, checkpoint_path)
    # A saved model's own weights load exactly; only what the caller changes on purpose may differ.
    own_weights = saved and checkpoint_path is None and not isinstance(pretrained, str | Path)

    config = config.replace(**kwargs) if kwargs else config
    # Weights first: a download that cannot happen fails before seconds of network building.
    if isinstance(weights_file, PretrainedCfg):
        state_dict = fetch_state_dict(weights_file)
    elif weights_file is not None:
        state_dict = read_state_dict(weights_file)
    else:
        state_dict = None
    from_encoder = encoder_pretrained and weights_file is None
    model = DeepLabV3Plus(config, encoder_pretrained=from_encoder)
    if state_dict is not None:
        try:
            load_into(
                model,
                state_dict,
                new_classes="num_classes" in kwargs,
                adapt_in_chans="in_chans" in kwargs,
                drop_aux=not own_weights or kwargs.get("aux_head") is False,
            )
        except ValueError as e:
            where = weights_file.name if isinstance(weights_file, PretrainedCfg) else str(weights_file)
            raise ValueError(f"the weights of {where!r} do not fit: {e}") from None
    described = pretrained_cfg_for(config, pretrained_cfg)
    if from_encoder:
        described = from_timm(described, timm_pretrained_cfg(config.encoder, model.encoder.body))
    if statistics:
        described = described.replace(**statistics)
    model.pretrained_cfg = described.for_in_chans(config.in_chans)
    return model


def _from_saved(source: str, pretrained: bool | str | Path | None, checkpoint_path: str | Path | None) -> _Source:
    """A saved folder or ``hf-hub:`` repo: its config, its metadata, and where its weights are."""
    if isinstance(pretrained, str | Path):
        if not (Path(pretrained).exists() or looks_like_path(str(pretrained))):
            raise ValueError(
                f"{source!r} is a saved model with its own weights; pretrained must be True, False or a local "
                f"checkpoint path, got {pretrained!r}"
            )
        checkpoint_path = checkpoint_path or pretrained
    config, pretrained_cfg = read_config(source)
    if checkpoint_path is not None:
        return config, pretrained_cfg, checkpoint_path
    if pretrained is False:
        return config, pretrained_cfg, None
    return config, pretrained_cfg, source_file(source, WEIGHTS_NAME)


def _from_registry(
    model_name: str, pretrained: bool | str | Path | None, checkpoint_path: str | Path | None
) -> _Source:
    """An architecture or ``ARCH.TAG``: the registered config, the tag's metadata, and where the weights are."""
    if "/" in model_name or "\\" in model_name:
        raise FileNotFoundError(
            f"no folder {model_name!r}; pass a folder written by save_pretrained(), a Hub repo as "
            f"'hf-hub:{model_name.strip('/')}', or an architecture name (deeplabv3p.list_models())"
        )
    arch, name_tag = split_model_name(model_name)
    config = get_model_config(arch)
    weights_file: str | Path | PretrainedCfg | None = checkpoint_path
    pretrained_cfg: PretrainedCfg | None = None
    tag = name_tag
    if isinstance(pretrained, Path) or (
        isinstance(pretrained, str) and (Path(pretrained).exists() or looks_like_path(pretrained))
    ):
        weights_file = pretrained
    elif isinstance(pretrained, str):
        tag = pretrained
    elif pretrained and tag is None:
        tag = _DEFAULT_DATASET
    if tag is not None and (pretrained or checkpoint_path is not None or name_tag is not None):
        pretrained_cfg = get_pretrained_cfg(arch, tag)
        config = config.replace(num_classes=pretrained_cfg.num_classes, align_corners=pretrained_cfg.align_corners)
        if weights_file is None and pretrained:
            weights_file = pretrained_cfg
    return config, pretrained_cfg, weights_file
