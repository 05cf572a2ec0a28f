"""Where a model's weights come from: `resolve_source`, the one place that decides, for `create_model` and every
command of the command line.

A model name is a saved model (a folder written by ``save_pretrained``, or ``hf-hub:ORG/NAME[@REVISION]``), or an
architecture of the registry, optionally with a published tag (``ARCH.TAG``). `pretrained` and `checkpoint_path`
then pick the weights: the saved model's own, a published tag's, a local file, or none. The answer is a `Source`:
the kind, the location, and the configs it implies. Nothing is downloaded here except a Hub model's
``config.json``; the weights are read (and fetched) by `Source.load`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..fields import path_kind
from ..models.config import ModelConfig
from ..spelling import Placeholder, call
from .config import PretrainedCfg
from .fetch import fetch_state_dict, pretrained_weights_file
from .hub import hub_file, is_hub_id, parse_hub_id
from .registry import get_model_config, get_pretrained_cfg, list_models, split_model_name
from .saved import CONFIG_NAME, read_config
from .state_dict import CHECKPOINT_SUFFIXES, WEIGHTS_NAME, read_state_dict

# "tag": a published ARCH.TAG (converted cache, Hub repo or mmseg URL); "hub" / "saved": a saved model's own weights
# on the Hub / in a folder; "file": a local checkpoint (a file, or a saved folder given as a checkpoint); "none".
SourceKind = Literal["tag", "hub", "saved", "file", "none"]
_DEFAULT_DATASET = "cityscapes"


@dataclass(frozen=True)
class Source:
    """Where a model's weights come from, and the configs that come with them.

    Attributes:
        kind: see `SourceKind`.
        location: the tag's ``ARCH.TAG``, the ``hf-hub:`` id, the saved folder, the checkpoint; None for ``"none"``.
        config: the architecture to build (before the caller's overrides).
        pretrained_cfg: what the weights are (the tag's or the saved model's); None for an architecture alone.
        exact: a saved model's own weights, which must fit its config exactly (no auxiliary head dropped).
    """

    kind: SourceKind
    location: str | Path | None
    config: ModelConfig
    pretrained_cfg: PretrainedCfg | None = None
    exact: bool = False

    def weights_file(self) -> Path | None:
        """The local file the weights are read from, fetched first where they are remote; None for ``"none"``."""
        if self.kind == "tag":
            assert self.pretrained_cfg is not None
            return pretrained_weights_file(self.pretrained_cfg)
        if self.location is None:
            return None
        if self.kind == "file":
            path = Path(self.location)
            return path / WEIGHTS_NAME if path.is_dir() else path
        return saved_file(self.location, WEIGHTS_NAME)

    def fetched(self) -> Source:
        """The same weights as a local ``"file"`` source: fetched once, so the caller can also name the file read."""
        if self.kind in ("file", "none"):
            return self
        return dataclasses.replace(self, kind="file", location=self.weights_file())

    def load(self) -> tuple[dict[str, torch.Tensor], str] | None:
        """The weights in our key layout, and how an error names them; None for ``"none"``.

        A published tag's converted copy that is damaged in the cache is fetched again (`fetch.fetch_state_dict`).
        """
        if self.kind == "none" or self.location is None:
            return None
        if self.kind == "tag":
            assert self.pretrained_cfg is not None
            return fetch_state_dict(self.pretrained_cfg), self.pretrained_cfg.name
        path = self.location if self.kind == "file" else saved_file(self.location, WEIGHTS_NAME)
        return read_state_dict(path), str(path)


def resolve_source(
    model_name: str | Path,
    pretrained: bool | str | Path | None = None,
    checkpoint_path: str | Path | None = None,
) -> Source:
    """Where the weights of `model_name` come from, as `create_model` documents its three arguments.

    Raises TypeError for arguments of the wrong type, FileNotFoundError for a path that is no folder, ValueError
    for a tag where a saved model's weights are meant, and the registry's errors for unknown names and tags.
    """
    if not isinstance(model_name, str | Path) or not str(model_name):
        raise TypeError(
            "model_name must be a non-empty str or Path: an architecture (deeplabv3p.list_models()), ARCH.TAG, a "
            f"folder written by save_pretrained() or 'hf-hub:ORG/NAME'; got {model_name!r} "
            f"({type(model_name).__name__})"
        )
    if checkpoint_path is not None and not isinstance(checkpoint_path, str | Path):
        raise TypeError(f"checkpoint_path must be a file path (str or Path), got {type(checkpoint_path).__name__}")
    if pretrained is not None and not isinstance(pretrained, bool | str | Path):
        raise TypeError(f"pretrained must be a bool, a tag or a file path, got {type(pretrained).__name__}")
    name = str(model_name)
    if is_saved_name(name):
        return _saved(name, pretrained, checkpoint_path)
    return _registered(name, pretrained, checkpoint_path)


def is_saved_name(name: str) -> bool:
    """A Hub id, or an existing folder whose name is not also an architecture (registry names win)."""
    if is_hub_id(name):
        return True
    return Path(name).is_dir() and split_model_name(name)[0] not in list_models()


def saved_file(name: str | Path, filename: str) -> Path:
    """`filename` of a saved model: inside the folder, or from the Hub repo (through the Hugging Face cache)."""
    if isinstance(name, str) and is_hub_id(name):
        repo_id, revision = parse_hub_id(name)
        return hub_file(repo_id, filename, revision=revision)
    path = Path(name) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{str(name)!r} has no {filename}; is it a folder written by save_pretrained()?")
    return path


def _looks_like_path(value: str | Path) -> bool:
    """A `pretrained` value that names a local checkpoint rather than a tag: an existing path, or a string with a
    path separator or a checkpoint suffix."""
    text = str(value)
    return Path(value).exists() or "/" in text or "\\" in text or text.endswith(CHECKPOINT_SUFFIXES)


def _saved(name: str, pretrained: bool | str | Path | None, checkpoint_path: str | Path | None) -> Source:
    """A saved folder or ``hf-hub:`` repo: its config, its metadata, and its own weights unless others are named."""
    if isinstance(pretrained, str | Path):
        if not _looks_like_path(pretrained):
            raise ValueError(
                f"{name!r} is a saved model with its own weights; pretrained must be True, False or a local "
                f"checkpoint path, got {pretrained!r}"
            )
        checkpoint_path = checkpoint_path or pretrained
    config, pretrained_cfg = read_config(saved_file(name, CONFIG_NAME))
    if checkpoint_path is not None:
        return Source("file", checkpoint_path, config, pretrained_cfg)
    if pretrained is False:
        return Source("none", None, config, pretrained_cfg)
    return Source("hub" if is_hub_id(name) else "saved", name, config, pretrained_cfg, exact=True)


def _registered(name: str, pretrained: bool | str | Path | None, checkpoint_path: str | Path | None) -> Source:
    """An architecture or ``ARCH.TAG``: the registered config, the tag's metadata, and where the weights are."""
    path_like = "/" in name or "\\" in name
    if (kind := path_kind(name)) != "nothing" and (path_like or split_model_name(name)[0] not in list_models()):
        raise ValueError(
            f"{name!r} is {kind}, not a folder written by save_pretrained() or an architecture name; load a "
            f"weights file with an architecture: {call(Placeholder('ARCH'), checkpoint_path=name)}"
        )
    if path_like:
        raise FileNotFoundError(
            f"no folder {name!r}; pass a folder written by save_pretrained(), a Hub repo as "
            f"'hf-hub:{name.strip('/')}', or an architecture name (deeplabv3p.list_models())"
        )
    arch, name_tag = split_model_name(name)
    config = get_model_config(arch)
    weights: str | Path | None = checkpoint_path
    tag = name_tag
    if isinstance(pretrained, Path) or (isinstance(pretrained, str) and _looks_like_path(pretrained)):
        weights = pretrained
    elif isinstance(pretrained, str):
        tag = pretrained
    elif pretrained and tag is None:
        tag = _DEFAULT_DATASET
    if tag is None or not (pretrained or checkpoint_path is not None or name_tag is not None):
        return Source("file", weights, config) if weights is not None else Source("none", None, config)
    pretrained_cfg = get_pretrained_cfg(arch, tag)
    config = config.replace(num_classes=pretrained_cfg.num_classes, align_corners=pretrained_cfg.align_corners)
    if weights is not None:
        return Source("file", weights, config, pretrained_cfg)
    if pretrained:
        return Source("tag", pretrained_cfg.name, config, pretrained_cfg)
    return Source("none", None, config, pretrained_cfg)
