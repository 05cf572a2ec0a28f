"""`create_model`: name -> `Source` (configs and where the weights are) -> network -> weights, the one funnel every
model goes through."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..models.config import ModelConfig
from ..models.model import DeepLabV3Plus
from .config import pretrained_cfg_for
from .encoder_cfg import from_timm, timm_pretrained_cfg
from .source import Source, resolve_source
from .state_dict import load_into

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"architecture"}
# PretrainedCfg fields create_model takes as keywords: the input statistics, one value per band.
_INPUT_FIELDS = {"mean", "std"}


def create_model(
    model_name: str | Path | Source,
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
            same format, ``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"``; or a `Source` that
            `resolve_source` returned (it carries the weights: leave `pretrained` and `checkpoint_path` out).
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
    if not isinstance(encoder_pretrained, bool):
        raise TypeError(f"encoder_pretrained must be a bool, got {encoder_pretrained!r}")
    unknown = sorted(set(kwargs) - _CONFIG_FIELDS - _INPUT_FIELDS)
    if unknown:
        accepted = sorted(_CONFIG_FIELDS | _INPUT_FIELDS)
        raise TypeError(f"create_model() got unknown argument(s) {unknown}; accepted: {accepted}")
    statistics = {name: kwargs.pop(name) for name in _INPUT_FIELDS & set(kwargs)}
    if isinstance(model_name, Source):
        if pretrained is not None or checkpoint_path is not None:
            raise TypeError(
                "a Source already says where the weights are: pass pretrained and checkpoint_path to "
                "resolve_source(), not to create_model()"
            )
        source = model_name
    else:
        source = resolve_source(model_name, pretrained, checkpoint_path)
    config = source.config.replace(**kwargs) if kwargs else source.config
    # Weights first: a download that cannot happen fails before seconds of network building.
    loaded = source.load()
    from_encoder = encoder_pretrained and loaded is None
    model = DeepLabV3Plus(config, encoder_pretrained=from_encoder)
    if loaded is not None:
        state_dict, where = loaded
        try:
            load_into(
                model,
                state_dict,
                new_classes="num_classes" in kwargs,
                adapt_in_chans="in_chans" in kwargs,
                # A saved model's own weights load exactly; only what the caller changes on purpose may differ.
                drop_aux=not source.exact or kwargs.get("aux_head") is False,
            )
        except ValueError as e:
            raise ValueError(f"the weights of {where!r} do not fit: {e}") from None
    described = pretrained_cfg_for(config, source.pretrained_cfg)
    if from_encoder:
        described = from_timm(described, timm_pretrained_cfg(config.encoder, model.encoder.body))
    if statistics:
        described = described.replace(**statistics)
    model.pretrained_cfg = described.for_in_chans(config.in_chans)
    return model
