"""`build_model`: name -> `Source` (configs and where the weights are) -> network -> weights, the one funnel every
model goes through (`deeplabv3p.create_model` is it for the class users get)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from ..models.config import ModelConfig
from ..models.model import DeepLabV3PlusNetwork
from .config import given_statistics, pretrained_cfg_for
from .encoder_cfg import from_timm, timm_pretrained_cfg
from .encoder_download import check_encoder_download
from .source import Source, resolve_source
from .state_dict import load_into

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"architecture"}
# PretrainedCfg fields create_model takes as keywords: the input statistics, one value per band.
_INPUT_FIELDS = {"mean", "std"}
_Network = TypeVar("_Network", bound=DeepLabV3PlusNetwork)


def build_model(
    model_class: type[_Network],
    model_name: str | Path | Source,
    pretrained: bool | str | Path | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    encoder_pretrained: bool = False,
    **kwargs: Any,
) -> _Network:
    """`deeplabv3p.create_model` for any network class: `model_class` (the network, or a class composing it with
    conveniences of higher layers) built and loaded as the arguments say; see ``create_model`` for them.

    The class is an argument so that this layer never imports the layers above it.
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
    if statistics:  # checked before the weights are read: one value per band, both given
        statistics = given_statistics(statistics, config.in_chans)
    # Weights first: a download that cannot happen fails before seconds of network building.
    loaded = source.load()
    from_encoder = encoder_pretrained and loaded is None
    check_encoder_download(config.encoder, config.encoder_kwargs, pretrained=from_encoder)
    model = model_class(config, encoder_pretrained=from_encoder)
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
    described = described.for_in_chans(config.in_chans)  # the weights' own RGB statistics, spread over the bands
    model.pretrained_cfg = described.replace(**statistics) if statistics else described
    return model
