"""The weights of a published tag as a local file: the converted copy in the cache, else the Hub repo, else the
original mmseg checkpoint (downloaded, sha256-checked, converted and cached as safetensors).

The cache is ``$DEEPLABV3P_CACHE`` (default ``$HF_HOME/deeplabv3p``), so the next load is offline. With
``HF_HUB_OFFLINE=1`` only the caches are used. Before a download, a quick connection check (`network.unreachable`)
tells a machine without network from a slow one. Every source that failed is named, with its reason and the fix,
in one `WeightsUnavailableError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants

from ..spelling import call
from .config import PretrainedCfg
from .download import DownloadError, download_url
from .hub import HubFileError, hub_file, is_offline
from .network import unreachable
from .state_dict import CHECKPOINT_SUFFIXES, WEIGHTS_NAME, read_state_dict, save_state_dict

_logger = logging.getLogger(__name__)

CACHE_ENV = "DEEPLABV3P_CACHE"


class WeightsUnavailableError(RuntimeError):
    """No source could provide the weights of a pretrained tag; the message lists what was tried and how to fix it."""


def cache_dir() -> Path:
    """Where converted mmseg checkpoints are kept: ``$DEEPLABV3P_CACHE``, else ``deeplabv3p/`` in the HF home."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(hf_constants.HF_HOME) / "deeplabv3p"


def converted_path(pretrained_cfg: PretrainedCfg) -> Path:
    """Cache path of the safetensors converted from a tag's original checkpoint (keyed by its sha256 prefix)."""
    if not pretrained_cfg.url:
        raise ValueError(f"{pretrained_cfg.name!r} has no original checkpoint URL")
    key = pretrained_cfg.sha256_prefix or hashlib.sha256(pretrained_cfg.url.encode()).hexdigest()[:8]
    return cache_dir() / "converted" / f"{pretrained_cfg.name}-{key}.safetensors"


def _download_and_convert(pretrained_cfg: PretrainedCfg, dest: Path, progress: bool) -> Path:
    """Original mmseg checkpoint -> verified temp file -> our layout -> `dest` (atomic); the .pth is not kept."""
    url = pretrained_cfg.url
    assert url is not None
    if not pretrained_cfg.sha256_prefix:
        _logger.warning("%s has no sha256 prefix: %s is downloaded without verification", pretrained_cfg.name, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        name = Path(urlparse(url).path).name
        if not name.endswith(CHECKPOINT_SUFFIXES):
            name += ".pth"
        original = download_url(url, Path(tmp) / name, sha256_prefix=pretrained_cfg.sha256_prefix, progress=progress)
        state_dict = read_state_dict(original)
    meta = {"source_url": url, "source_sha256_prefix": pretrained_cfg.sha256_prefix or ""}
    return save_state_dict(state_dict, dest, metadata=meta)


def pretrained_weights_file(
    pretrained_cfg: PretrainedCfg, *, revision: str | None = None, progress: bool = True
) -> Path:
    """A local safetensors file with the weights of a published tag, fetched if needed.

    Order: the converted copy in `cache_dir` (no network at all); the Hub repo ``pretrained_cfg.hf_hub_id``
    (``model.safetensors`` at `revision`); the original checkpoint at ``pretrained_cfg.url``, downloaded with a
    progress bar, checked against ``sha256_prefix``, converted and cached. With ``HF_HUB_OFFLINE=1`` only caches
    are used.

    Raises:
        WeightsUnavailableError: every source failed; the message says what was tried, why each failed and what to do.
    """
    tried: list[tuple[str, str]] = []
    cached = converted_path(pretrained_cfg) if pretrained_cfg.url else None
    if cached is not None and cached.is_file():
        return cached
    if pretrained_cfg.hf_hub_id:
        try:
            return hub_file(pretrained_cfg.hf_hub_id, WEIGHTS_NAME, revision=revision)
        except HubFileError as e:
            tried.append((f"Hugging Face Hub repo {pretrained_cfg.hf_hub_id}", str(e)))
    if pretrained_cfg.url and cached is not None:
        source = f"original mmseg checkpoint {pretrained_cfg.url}"
        no_network = None if is_offline() else unreachable(pretrained_cfg.url)
        if is_offline():
            tried.append((source, f"not downloaded: offline mode is on, and no converted copy is cached at {cached}"))
        elif no_network is not None:
            tried.append((source, f"not downloaded: {no_network}, and no converted copy is cached at {cached}"))
        else:
            try:
                return _download_and_convert(pretrained_cfg, cached, progress)
            except (DownloadError, ValueError) as e:
                tried.append((source, str(e)))
    raise WeightsUnavailableError(_unavailable_message(pretrained_cfg, tried))


def _unavailable_message(pretrained_cfg: PretrainedCfg, tried: list[tuple[str, str]]) -> str:
    name = pretrained_cfg.name
    lines = [f"could not get the weights of {name!r}."]
    if tried:
        lines.append("Tried:")
        lines += [f"  {i}. {source}: {reason}" for i, (source, reason) in enumerate(tried, 1)]
    else:
        lines.append("The tag names no Hub repo and no checkpoint URL.")
    lines.append("To fix:")
    if is_offline():
        lines.append("  - unset HF_HUB_OFFLINE to allow downloads, or fill the cache on a machine that is online;")
    else:
        lines.append("  - check the network connection (and a proxy: HTTPS_PROXY) and try again;")
        lines.append(
            "  - on a machine without network, set HF_HUB_OFFLINE=1: only the caches are used, with no connection "
            "attempt;"
        )
    if pretrained_cfg.url:
        sha = f" (its sha256 starts with {pretrained_cfg.sha256_prefix})" if pretrained_cfg.sha256_prefix else ""
        lines.append(
            f"  - or download {pretrained_cfg.url}{sha} by hand and pass it: "
            + call(name, pretrained=True, checkpoint_path=Path(urlparse(pretrained_cfg.url).path).name)
        )
    return "\n".join(lines)


def fetch_state_dict(
    pretrained_cfg: PretrainedCfg, *, revision: str | None = None, progress: bool = True
) -> dict[str, torch.Tensor]:
    """The weights of a published tag, in our key layout (see `pretrained_weights_file` for where from).

    A converted copy in the cache that cannot be read (damaged on disk) is deleted and fetched again.
    """
    path = pretrained_weights_file(pretrained_cfg, revision=revision, progress=progress)
    try:
        return read_state_dict(path)
    except Exception as e:
        if pretrained_cfg.url is None or path != converted_path(pretrained_cfg):
            raise
        _logger.warning("cached weights %s are unreadable (%s): fetching them again", path, e)
        path.unlink(missing_ok=True)
    return read_state_dict(pretrained_weights_file(pretrained_cfg, revision=revision, progress=progress))
