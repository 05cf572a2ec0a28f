"""The Hugging Face Hub side: ``hf-hub:`` ids, one file of a Hub repo through the Hugging Face cache, and pushing a
model there in the saved-model format (`saved.py`).

`hub_file` honours ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, tokens and revisions (``huggingface_hub``).
Before it asks the Hub, a quick connection check (`network.unreachable`) tells a machine without network from a
slow one, so the first load on such a machine fails (or falls back to the cache) in seconds even without
``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import contextlib
import importlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..version import __version__
from .config import pretrained_cfg_for
from .network import unreachable
from .saved import model_config, save_pretrained

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork

HUB_PREFIX = "hf-hub:"


class HubFileError(OSError):
    """One file of a Hub repo could not be had (not on the Hub, not in the cache, or the Hub unreachable)."""


class HubUploadError(OSError):
    """An upload to the Hub could not be made (offline, Hub unreachable, refused); the message says what and how
    to fix it. The upload is one commit, so the repo holds either all of the model or none of it."""


def is_hub_id(name: object) -> bool:
    """True for ``"hf-hub:org/name[@revision]"``."""
    return isinstance(name, str) and name.startswith(HUB_PREFIX)


def parse_hub_id(name: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` -> ``("org/name", "rev")``; the revision is None when not given."""
    if not is_hub_id(name):
        raise ValueError(f"a Hub model id starts with {HUB_PREFIX!r}, got {name!r}")
    repo_id, _, revision = name[len(HUB_PREFIX) :].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"a Hub model id is 'hf-hub:ORG/NAME' or 'hf-hub:ORG/NAME@REVISION', got {name!r}")
    return repo_id, revision or None


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


def require_hub(what: str) -> None:
    """Raise `HubUploadError` at once, before anything is sent, when `what` (an upload) cannot reach the Hub:
    offline mode is on, or the quick connection check fails."""
    if is_offline():
        raise HubUploadError(f"cannot {what}: offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    no_network = unreachable(hf_constants.ENDPOINT)
    if no_network is not None:
        raise HubUploadError(
            f"cannot {what}: the Hub could not be reached ({no_network}); nothing was uploaded. Connect to the "
            "network (or set HTTPS_PROXY) and run it again"
        )


def connection_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises when a request fails: its HTTP errors, and its HTTP client's (httpx2 or httpx;
    requests, before huggingface_hub 1.0, raises OSErrors)."""
    errors: list[type[Exception]] = [HfHubHTTPError, OSError]
    for client in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(importlib.import_module(client).HTTPError)
    return tuple(errors)


def _upload_error(what: str, e: Exception) -> HubUploadError:
    """`HubUploadError` for a failed request of an upload: no token, refused (access, branch) or connection lost."""
    cause = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, LocalTokenNotFoundError):
        return HubUploadError(f"cannot {what}: no Hub token; log in with `hf auth login` (or pass token=)")
    if isinstance(e, HfHubHTTPError):
        return HubUploadError(
            f"cannot {what}: the Hub refused ({cause}); nothing was committed. Log in with `hf auth login` (or "
            "pass token=) as an account with write access to the repo, and check the revision"
        )
    return HubUploadError(
        f"cannot {what}: the request failed ({type(e).__name__}: {cause}); nothing was committed. Run it again "
        "once the network is back"
    )


def push_to_hub(
    model: DeepLabV3PlusNetwork,
    repo_id: str,
    *,
    commit_message: str = "Upload deeplabv3p model",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create `repo_id` on the Hub if needed and upload the model in the saved-model format; returns the commit URL.

    The uploaded ``config.json`` names `repo_id` as the weights' ``hf_hub_id``, so
    ``create_model("hf-hub:" + repo_id)`` gives the model back. `revision` must be an existing branch.
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise ValueError(f"repo_id must be 'NAME' or 'ORG/NAME', got {repo_id!r}")
    pretrained_cfg = pretrained_cfg_for(model_config(model), getattr(model, "pretrained_cfg", None))
    what = f"push the model to the Hub repo {repo_id}"
    require_hub(what)
    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    except connection_errors() as e:
        raise _upload_error(what, e) from e
    with tempfile.TemporaryDirectory(prefix="deeplabv3p-push-") as tmp:
        save_pretrained(model, tmp, pretrained_cfg=pretrained_cfg.replace(hf_hub_id=repo_id))
        try:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )
        except connection_errors() as e:
            raise _upload_error(what, e) from e
    return str(getattr(info, "commit_url", info))
