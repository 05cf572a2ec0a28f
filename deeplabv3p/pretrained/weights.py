"""The one weights-loading path: find weights, read them (ours or mmseg's) and load them into a model with checks.

Where weights come from, in order:

1. a local file or folder, used as given (`read_state_dict`);
2. for a published tag (`fetch_state_dict`): a converted copy in the local cache, else the Hub repo
   ``HUB_ORG/ARCH.TAG`` (``huggingface_hub``: honours ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, tokens,
   revisions), else the original mmseg checkpoint from its URL, sha256-checked, converted and cached as safetensors
   under ``$DEEPLABV3P_CACHE`` (default ``$HF_HOME/deeplabv3p``) so the next load is offline.

Before a download, a quick connection check (`network.unreachable`) tells a machine without network from a slow
one, so the first load on such a machine fails (or falls back to the caches) in seconds even without
``HF_HUB_OFFLINE``.

Files are read without executing code: safetensors, or ``torch.load(weights_only=True)`` for ``.pth``.
mmseg checkpoints are recognised by their keys and converted (`convert.py`). Everything written is written to a
temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.models import adapt_input_conv
from torch import nn

from ..atomic import atomic_path
from ..version import __version__
from .config import PretrainedCfg
from .convert import convert_mmseg_state_dict, is_mmseg_state_dict
from .download import DownloadError, download_url
from .network import unreachable

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CACHE_ENV = "DEEPLABV3P_CACHE"
CLASSIFIER_PREFIXES = ("classifier.", "aux_head.classifier.")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class WeightsUnavailableError(RuntimeError):
    """No source could provide the weights of a pretrained tag; the message lists what was tried and how to fix it."""


class HubFileError(OSError):
    """One file of a Hub repo could not be had (not on the Hub, not in the cache, or the Hub unreachable)."""


def _torch_load_failure(path: Path, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused `path`, in one line (torch's own text advises unsafe loading)."""
    text = str(error)
    unsafe = re.search(r"unsupported GLOBAL (\S+)", text, flags=re.IGNORECASE)
    if unsafe:
        return (
            f"it holds a pickled Python object ({unsafe[1]}) besides tensors and plain containers, and deeplabv3p "
            "never unpickles code; convert it to .safetensors where it was made, or re-save only its state_dict"
        )
    if path.stat().st_size == 0:
        return "the file is empty"
    if isinstance(error, EOFError):
        return "the file ends early (truncated?); download or copy it again"
    if "PytorchStreamReader" in text or "zip archive" in text:
        return "it is damaged or truncated (not a readable torch.save zip archive); download or copy it again"
    return "it is not a file written by torch.save (or it is damaged)"


def torch_load(path: str | Path, what: str = "a PyTorch checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: runs no code, and any failure is a ValueError naming the
    file and the reason."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"cannot read {str(path)!r} as {what}: {_torch_load_failure(path, e)}. Files are read with "
            "torch.load(weights_only=True), which loads tensors and plain containers only."
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except SafetensorError as e:
        reason = "the file is empty" if path.stat().st_size == 0 else f"{e}"
        raise ValueError(
            f"cannot read {str(path)!r} as safetensors: {reason}. The file is damaged, truncated or not a "
            "safetensors file; download or copy it again."
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth`` checkpoint, or a saved folder, into our key layout.

    A ``.pth`` may be a bare state dict or mmseg's ``{'meta': ..., 'state_dict': ...}`` container; mmseg checkpoints
    are converted. A folder (as written by ``save_pretrained``) is read through its ``model.safetensors``.
    A file that cannot be read is a ValueError naming it.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"folder {str(path)!r} has no {WEIGHTS_NAME}; is it a save_pretrained() folder?")
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        state_dict = _read_safetensors(path)
    elif path.suffix in TORCH_SUFFIXES:
        obj = torch_load(path)
        state_dict = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
        if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise ValueError(f"{str(path)!r} holds no state dict of tensors (found {type(state_dict).__name__})")
    else:
        raise ValueError(
            f"unsupported checkpoint file {str(path)!r}: expected .safetensors or one of {list(TORCH_SUFFIXES)}"
        )
    if is_mmseg_state_dict(state_dict):
        state_dict = convert_mmseg_state_dict(state_dict)
    return state_dict


def _differs_in_input_channels(value: torch.Tensor, target: torch.Tensor) -> bool:
    return (
        value.dim() == 4
        and target.dim() == 4
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
    )


@dataclass
class LoadReport:
    """What `load_into` did beyond a plain copy."""

    reinitialized: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def load_into(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    new_classes: bool = False,
    adapt_in_chans: bool = False,
    drop_aux: bool = False,
) -> LoadReport:
    """Copy `state_dict` into `model`: every key must be there with its shape, except where the caller allows.

    Args:
        new_classes: a classifier whose class count differs is left freshly initialised (fine-tuning on new
            classes, with a warning).
        adapt_in_chans: a first conv trained on another number of input channels is adapted to the model's
            ``in_chans`` as timm does.
        drop_aux: auxiliary-head weights are dropped when the model has no auxiliary head.

    Any other missing, unexpected or mis-shaped key raises a ValueError that lists them with their shapes.
    """
    report = LoadReport()
    own = model.state_dict()
    state_dict = dict(state_dict)
    if drop_aux and getattr(model, "aux_head", "absent") is None:
        report.dropped = sorted(k for k in state_dict if k.startswith("aux_head."))
        for k in report.dropped:
            del state_dict[k]
    first_conv = next(k for k, v in own.items() if v.dim() == 4)
    mismatched, classifiers = [], []
    for key, value in list(state_dict.items()):
        if key not in own or own[key].shape == value.shape:
            continue
        target = own[key]
        if key.startswith(CLASSIFIER_PREFIXES) and new_classes:
            report.reinitialized.append(key)
            del state_dict[key]
        elif key == first_conv and adapt_in_chans and _differs_in_input_channels(value, target):
            state_dict[key] = adapt_input_conv(target.shape[1], value)
            report.adapted.append(key)
        else:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}")
            if key.startswith(CLASSIFIER_PREFIXES):
                classifiers.append((value.shape[0], target.shape[0]))
    missing = sorted(set(own) - set(state_dict) - set(report.reinitialized))
    unexpected = sorted(set(state_dict) - set(own))
    if mismatched or missing or unexpected:
        lines = []
        if mismatched:
            lines.append(f"shape mismatch ({len(mismatched)}): {mismatched[:10]}")
        if missing:
            lines.append(f"missing from the checkpoint ({len(missing)}): {missing[:10]}")
        if unexpected:
            lines.append(f"not in the model ({len(unexpected)}): {unexpected[:10]}")
        if classifiers and len(mismatched) == len(classifiers):
            theirs, ours = classifiers[0]
            lines.append(
                f"the checkpoint predicts {theirs} classes and the model {ours}: pass num_classes={theirs} to load "
                f"it as it is, or num_classes={ours} explicitly to fine-tune with a freshly initialised classifier"
            )
        raise ValueError(
            "checkpoint does not fit the model; does the architecture match the weights?\n  " + "\n  ".join(lines)
        )
    model.load_state_dict(state_dict, strict=False)
    if report.reinitialized:
        warnings.warn(
            f"class count differs from the checkpoint: {report.reinitialized} left freshly initialised "
            "(expected when fine-tuning on new classes)",
            stacklevel=3,
        )
    if report.adapted:
        _logger.info("adapted input conv(s) %s to in_chans", report.adapted)
    if report.dropped:
        _logger.info("dropped %d auxiliary-head weights (model built without aux head)", len(report.dropped))
    return report


def save_state_dict(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write `state_dict` as safetensors to `path` atomically (temporary name in the same folder, then rename).

    A failed write (disk full, no permission) is an OSError naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
        except SafetensorError as e:  # safetensors reports I/O failures as its own error type
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise OSError(f"cannot write {str(path)!r}: {e}") from e
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from e
    return path


def cache_dir() -> Path:
    """Where converted mmseg checkpoints are kept: ``$DEEPLABV3P_CACHE``, else ``deeplabv3p/`` in the HF home."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(hf_constants.HF_HOME) / "deeplabv3p"


def is_offline() -> bool:
    """huggingface_hub's offline switch (``HF_HUB_OFFLINE=1``), which also stops downloads from mmseg URLs."""
    return bool(hf_constants.HF_HUB_OFFLINE)


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """One file of a Hub model repo, from the Hugging Face cache or downloaded into it.

    Raises:
        HubFileError: with a one-line reason (no such repo, revision or file; offline and not cached; Hub down).
    """
    where = f"{filename} of {repo_id}@{revision or 'main'}"
    no_network = None if is_offline() else unreachable(hf_constants.ENDPOINT)
    if no_network is not None:  # the cached copy if there is one, without asking huggingface_hub to connect
        cached = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(cached, str):
            return Path(cached)
        raise HubFileError(
            f"the Hub could not be reached ({no_network}) and {where} is not in the Hugging Face cache "
            f"({hf_constants.HF_HUB_CACHE}); without network, set HF_HUB_OFFLINE=1 to use the caches only"
        )
    try:
        return Path(
            hf_hub_download(
                repo_id, filename, revision=revision, library_name="deeplabv3p", library_version=__version__
            )
        )
    except LocalEntryNotFoundError as e:
        if is_offline():
            reason = f"offline mode is on (HF_HUB_OFFLINE=1) and {where} is not in the Hugging Face cache"
        else:
            reason = f"the Hub could not be reached and {where} is not in the Hugging Face cache"
        raise HubFileError(f"{reason} ({hf_constants.HF_HUB_CACHE})") from e
    except GatedRepoError as e:
        raise HubFileError(f"{repo_id} is gated: accept its terms on the Hub and log in (`hf auth login`)") from e
    except RepositoryNotFoundError as e:
        raise HubFileError(f"no repository {repo_id} on the Hub (if it is private, log in with `hf auth login`)") from e
    except RevisionNotFoundError as e:
        raise HubFileError(f"repository {repo_id} has no revision {revision!r}") from e
    except EntryNotFoundError as e:
        raise HubFileError(f"repository {repo_id} has no file {filename} at revision {revision or 'main'}") from e
    except HfHubHTTPError as e:
        raise HubFileError(f"the Hub refused {where}: {str(e).splitlines()[0]}") from e
    except (OSError, ValueError) as e:  # invalid repo id, unwritable cache, ...
        raise HubFileError(f"could not get {where}: {e}") from e


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
        if not name.endswith((*TORCH_SUFFIXES, ".safetensors")):
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
            f'create_model("{name}", pretrained=True, checkpoint_path="{Path(urlparse(pretrained_cfg.url).path).name}")'
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
