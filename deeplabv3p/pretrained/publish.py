"""Publishing the model zoo: the original mmseg checkpoints in a folder -> one saved-model folder per tag
(``config.json``, ``model.safetensors``, model card) -> Hub repos ``ORG/ARCH.TAG``.

`publish_zoo` handles every tag whose checkpoint is in the folder, found by the file name of its published URL
and refused unless its sha256 starts with the published prefix. It is resumable: each tag is converted again (CPU
only), and a Hub repo that already holds the same three files (``model.safetensors`` by its LFS sha256, the small
files by their git blob ids) is left alone, so a re-run after an interruption uploads only what is missing.
Pushed to the organisation `HUB_ORG`, the repos are where ``create_model(TAG, pretrained=True)`` looks first.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import huggingface_hub

from ..models.model import DeepLabV3PlusNetwork
from ..version import __version__
from .config import PretrainedCfg
from .download import ChecksumError, sha256_file
from .factory import build_model
from .hub import connection_errors, require_hub
from .registry import get_pretrained_cfg, list_pretrained, split_model_name
from .saved import save_pretrained
from .state_dict import load_into, read_state_dict
from .zoo import HUB_ORG

Status = Literal["written", "uploaded", "unchanged", "failed"]


@dataclass(frozen=True)
class Published:
    """What `publish_zoo` did with one tag: ``written`` (a folder, no push), ``uploaded``, ``unchanged`` (already
    on the Hub, skipped) or ``failed`` (`detail` says why)."""

    name: str
    status: Status
    detail: str = ""


def checkpoint_filename(cfg: PretrainedCfg) -> str:
    """The file name of a tag's original mmseg checkpoint (the last part of its URL)."""
    if not cfg.url:
        raise ValueError(f"{cfg.name!r} has no original checkpoint URL")
    return Path(urlparse(cfg.url).path).name


def find_zoo_checkpoints(directory: str | Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """``{ARCH.TAG: file}`` for the tags (default: all) whose original checkpoint is in `directory`, by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(directory)!r} does not exist")
    found = {}
    for name in names if names is not None else list_pretrained():
        cfg = get_pretrained_cfg(name)
        path = directory / checkpoint_filename(cfg) if cfg.url else None
        if path is not None and path.is_file():
            found[name] = path
    return found


def verify_checkpoint(checkpoint: str | Path, cfg: PretrainedCfg) -> str:
    """The sha256 of `checkpoint`; a ChecksumError when it does not start with the tag's published prefix."""
    digest = sha256_file(checkpoint)
    if cfg.sha256_prefix and not digest.startswith(cfg.sha256_prefix.lower()):
        raise ChecksumError(
            f"the sha256 of {str(checkpoint)!r} ({digest[:16]}...) does not start with {cfg.sha256_prefix}, the "
            f"published file of {cfg.name}: the tag's metadata (metrics) would not describe these weights"
        )
    return digest


def model_from_checkpoint(checkpoint: str | Path, name: str) -> DeepLabV3PlusNetwork:
    """`name` (``ARCH.TAG``, or ``ARCH`` taking the class count from the checkpoint) with the weights of
    `checkpoint` (mmseg ``.pth`` or safetensors in either key layout), every key fitting."""
    checkpoint = Path(checkpoint)
    state_dict = read_state_dict(checkpoint)
    arch, tag = split_model_name(name)
    classifier = state_dict.get("classifier.conv.weight")
    if classifier is None:
        raise ValueError(f"{checkpoint} has no classifier weights (decode_head.conv_seg): is it a DeepLabV3+?")
    classes = int(classifier.shape[0])
    if tag is None:
        model = build_model(DeepLabV3PlusNetwork, arch, num_classes=classes)
    else:
        model = build_model(DeepLabV3PlusNetwork, name)
        if model.num_classes != classes:  # refused before loading: converting never re-initialises a classifier
            raise ValueError(
                f"{checkpoint} predicts {classes} classes and {name} {model.num_classes}: pass the tag these "
                f"weights belong to, or the bare architecture {arch!r} to take the class count from the checkpoint"
            )
    load_into(model, state_dict, drop_aux=True)
    return model.eval()


def write_tag(
    name: str, checkpoint: str | Path, folder: str | Path, hf_hub_id: str | None = None, overwrite: bool = False
) -> Path:
    """Convert the original checkpoint of tag `name` into a saved-model folder (sha256-checked, strict fit).

    The written ``pretrained_cfg`` names `hf_hub_id` (default: the tag's repo under `HUB_ORG`) and notes the file
    and full sha256 it was converted from; the model card states source, licence, metrics and test settings.
    """
    cfg = get_pretrained_cfg(name)
    digest = verify_checkpoint(checkpoint, cfg)
    model = model_from_checkpoint(checkpoint, name)
    provenance = f"converted by deeplabv3p {__version__} from {Path(checkpoint).name} (sha256 {digest})"
    assert model.pretrained_cfg is not None  # create_model always sets it
    described = model.pretrained_cfg.replace(
        hf_hub_id=hf_hub_id or cfg.hf_hub_id, notes=(*model.pretrained_cfg.notes, provenance)
    )
    return save_pretrained(model, folder, pretrained_cfg=described, overwrite=overwrite)


def _git_blob_id(data: bytes) -> str:
    """The id git (and the Hub, for files not in LFS) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def same_as_on_hub(folder: Path, siblings: Sequence[Any]) -> bool:
    """Whether the Hub files `siblings` (``HfApi.model_info(..., files_metadata=True).siblings``) are exactly the
    files of `folder`: LFS files compared by sha256, the others by git blob id."""
    remote = {s.rfilename: s for s in siblings if s.rfilename != ".gitattributes"}
    local = sorted(p.name for p in folder.iterdir() if p.is_file())
    if sorted(remote) != local:
        return False
    for filename in local:
        sibling = remote[filename]
        lfs = getattr(sibling, "lfs", None)
        if lfs is not None:
            if getattr(lfs, "sha256", None) != sha256_file(folder / filename):
                return False
        elif getattr(sibling, "blob_id", None) != _git_blob_id((folder / filename).read_bytes()):
            return False
    return True


def _push(api: Any, folder: Path, repo_id: str, name: str, source: Path, private: bool | None) -> Status:
    if api.repo_exists(repo_id):
        info = api.model_info(repo_id, files_metadata=True)
        if same_as_on_hub(folder, info.siblings or []):
            return "unchanged"
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=f"{name}: converted from {source.name} with deeplabv3p {__version__}",
    )
    return "uploaded"


def _check_org(org: str) -> None:
    if not isinstance(org, str) or not org or "/" in org or org.strip() != org:
        raise ValueError(f"the Hub organisation must be a name without '/', got {org!r}")


def publish_zoo(
    checkpoints: str | Path,
    *,
    org: str | None = None,
    out: str | Path | None = None,
    names: Sequence[str] | None = None,
    api: Any = None,
    private: bool | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[Published]:
    """Convert every tag (or those in `names`) whose mmseg checkpoint is in `checkpoints`, and write and/or push it.

    Args:
        checkpoints: folder holding original checkpoints under their published file names.
        org: Hub organisation to push ``ORG/ARCH.TAG`` repos to; None writes folders only.
        out: folder to write ``OUT/ARCH.TAG/`` into (kept); with `org` only, folders are staged in a temporary one.
        names: ``ARCH.TAG`` names to consider; default the whole zoo.
        api: a ``huggingface_hub.HfApi`` (default: a new one, with the token of ``hf auth login`` / ``HF_TOKEN``).
        private: visibility of repos created on the Hub.
        overwrite: also write into an existing ``OUT/ARCH.TAG`` that is not a model folder.
        log: called with one line per tag as it finishes.

    Returns one `Published` per tag found, in zoo order. A tag that fails (checksum, fit, upload) is reported and
    the others go on.
    """
    if org is None and out is None:
        raise ValueError("pass org (push to the Hub) and/or out (write folders)")
    if org is not None:
        _check_org(org)
        if api is None:
            require_hub(f"push the zoo to the Hub organisation {org}")  # before hours of converting
            api = huggingface_hub.HfApi(library_name="deeplabv3p", library_version=__version__)
    found = find_zoo_checkpoints(checkpoints, names)
    if not found:
        example = checkpoint_filename(get_pretrained_cfg(list_pretrained()[0]))
        raise ValueError(
            f"{str(checkpoints)!r} holds no checkpoint of the zoo; files must keep their published names, e.g. "
            f"{example} (deeplabv3p list --pretrained names the tags)"
        )
    tag_errors: tuple[type[Exception], ...] = (ValueError, *connection_errors())  # one tag fails, the rest go on
    results = []
    for i, (name, source) in enumerate(found.items(), 1):
        repo_id = f"{org}/{name}" if org is not None else None
        with tempfile.TemporaryDirectory(prefix="deeplabv3p-publish-") as staging:
            folder = Path(out) / name if out is not None else Path(staging) / name
            try:
                write_tag(name, source, folder, hf_hub_id=repo_id, overwrite=overwrite)
                status = _push(api, folder, repo_id, name, source, private) if repo_id is not None else "written"
                result = Published(name, status, repo_id or str(folder))
            except tag_errors as e:
                result = Published(name, "failed", str(e))
        results.append(result)
        if log is not None:
            log(f"[{i}/{len(found)}] {name}: {result.status} ({result.detail})")
    return results


def hub_org_note(org: str) -> str | None:
    """A reminder when `org` is not the organisation ``create_model(TAG, pretrained=True)`` downloads from."""
    if org == HUB_ORG:
        return None
    return (
        f"create_model(TAG, pretrained=True) downloads from {HUB_ORG}/ARCH.TAG; the repos pushed to {org}/ load "
        f"as create_model('hf-hub:{org}/ARCH.TAG')"
    )
