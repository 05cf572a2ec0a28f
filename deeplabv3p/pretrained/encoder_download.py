"""Before timm downloads an encoder's files: is the network there, or are the files cached?

timm fetches an encoder's ImageNet weights (``encoder_pretrained=True``) from the Hub or a URL, and an
``encoder="hf-hub:ORG/NAME"`` trunk's ``config.json`` from the Hub even without weights. Without network that is
huggingface_hub's retry schedule (about 50 s) ending in an error that names neither the encoder nor a fix.
`check_encoder_download` finds what timm would download, and for each file that is not in its cache runs the same
quick connection check as published tags (`network.unreachable`): no network means a `WeightsUnavailableError`
naming the encoder, the file, the reason and the fixes, in well under a second. Cached files, local weight files
(``pretrained_cfg_overlay={"file": ...}``) and ``HF_HUB_OFFLINE=1`` (huggingface_hub then reads only its cache,
at once) need no check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm.models
import torch.hub
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache

from ..spelling import arg
from .fetch import WeightsUnavailableError
from .hub import HUB_PREFIX, is_offline
from .network import unreachable

# timm's weight files in a Hub repo, in the order it tries them when the config names none.
_TIMM_HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class _Download:
    """One file timm would fetch: what it is, the URL it is fetched from, and whether a cached copy exists."""

    what: str
    url: str
    cached: bool


def _hub_file(repo: str, filenames: tuple[str, ...], what: str) -> _Download:
    repo_id, _, revision = repo.partition("@")
    cached = any(isinstance(try_to_load_from_cache(repo_id, f, revision=revision or None), str) for f in filenames)
    where = f"{' or '.join(filenames)} of the Hub repo {repo}"
    return _Download(f"{what} ({where})", hf_constants.ENDPOINT, cached)


def _timm_downloads(encoder: str, encoder_kwargs: Mapping[str, Any], pretrained: bool) -> list[_Download]:
    """The files `timm.create_model(encoder, pretrained=pretrained, **encoder_kwargs)` would download."""
    if encoder.startswith(HUB_PREFIX):
        repo = encoder[len(HUB_PREFIX) :]
        downloads = [_hub_file(repo, ("config.json",), "the encoder's timm config")]
        if pretrained:
            downloads.append(_hub_file(repo, _TIMM_HUB_WEIGHTS, "timm's pretrained weights"))
        return downloads
    if not pretrained:
        return []
    default = timm.models.get_pretrained_cfg(encoder)
    overlay = dict(encoder_kwargs.get("pretrained_cfg_overlay") or {})
    cfg = {**(default.to_dict() if default is not None else {}), **overlay}
    if cfg.get("file") or cfg.get("state_dict"):
        return []  # a local file or an in-memory state dict: nothing to download
    if cfg.get("hf_hub_id"):
        filename = cfg.get("hf_hub_filename")
        filenames = (str(filename),) if filename else _TIMM_HUB_WEIGHTS
        return [_hub_file(str(cfg["hf_hub_id"]), filenames, "timm's pretrained weights")]
    url = cfg.get("url")
    if url:
        cached = (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()
        return [_Download(f"timm's pretrained weights ({url})", str(url), cached)]
    return []  # no weights known to timm: timm itself says so


def check_encoder_download(encoder: str, encoder_kwargs: Mapping[str, Any], pretrained: bool) -> None:
    """Raise at once when timm would have to download a file for `encoder` and the network is not there.

    Raises:
        WeightsUnavailableError: names the encoder, the file, why it cannot be fetched, and the fixes.
    """
    for download in _timm_downloads(encoder, encoder_kwargs, pretrained):
        if download.cached or (download.url == hf_constants.ENDPOINT and is_offline()):
            continue
        reason = unreachable(download.url)
        if reason is None:
            continue
        overlay = arg("encoder_kwargs", {"pretrained_cfg_overlay": {"file": "PATH"}})
        local = f"{overlay} for a local copy of its weights"
        if encoder.startswith(HUB_PREFIX):
            fixes = f"use the timm name {encoder.rpartition('/')[2]!r} instead of the Hub id, with {local}"
        else:
            fixes = f"pass {local}; or leave the encoder's weights random ({arg('encoder_pretrained', False)})"
        raise WeightsUnavailableError(
            f"encoder {encoder!r} needs {download.what}, which is not cached, and the network is not there "
            f"({reason}). Fixes: go online once (the file is then cached); or {fixes}."
        )
