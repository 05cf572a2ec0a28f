"""The saved-model format, shared by local folders and Hugging Face Hub repos, and pushing it to the Hub.

A saved model is a folder (or Hub repo) holding

- ``config.json``: ``{"schema_version", "architecture", "model_config", "pretrained_cfg", "library_version"}``,
  i.e. `ModelConfig.to_dict()` (how to build the network) and `PretrainedCfg.to_dict()` (what the weights are);
- ``model.safetensors``: the state dict in our key layout;
- ``README.md``: a generated model card.

``create_model("path/to/folder")`` and ``create_model("hf-hub:org/name[@revision]")`` read it back (`read_config`,
`source_file`); `save_pretrained` and `push_to_hub` write it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_text
from ..models.config import ModelConfig
from ..version import __version__
from .config import CONFIG_SCHEMA_VERSION, PretrainedCfg
from .model_card import model_card
from .weights import WEIGHTS_NAME, hub_file, save_state_dict

if TYPE_CHECKING:
    from ..models.model import DeepLabV3Plus

CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
HUB_PREFIX = "hf-hub:"
_CONFIG_KEYS = frozenset({"schema_version", "architecture", "model_config", "pretrained_cfg", "library_version"})


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


def source_file(source: str | Path, filename: str) -> Path:
    """`filename` of a saved model: inside the folder, or from the Hub repo (through the Hugging Face cache)."""
    if isinstance(source, str) and is_hub_id(source):
        repo_id, revision = parse_hub_id(source)
        return hub_file(repo_id, filename, revision=revision)
    path = Path(source) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{str(source)!r} has no {filename}; is it a folder written by save_pretrained()?")
    return path


def config_dict(config: ModelConfig, pretrained_cfg: PretrainedCfg) -> dict[str, Any]:
    """The content of ``config.json``."""
    return {
        "schema_version": CONFIG_SCHEMA_VERSION,
        "architecture": config.architecture,
        "model_config": config.to_dict(),
        "pretrained_cfg": pretrained_cfg.to_dict(),
        "library_version": __version__,
    }


def parse_config(data: Any, origin: str = "config.json") -> tuple[ModelConfig, PretrainedCfg]:
    """Validate the content of a ``config.json`` (read from `origin`) and build its two records."""
    if not isinstance(data, dict) or "model_config" not in data:
        raise ValueError(f"{origin} is not a deeplabv3p config: expected an object with 'model_config'")
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{origin}: schema_version must be a positive int, got {version!r}")
    if version > CONFIG_SCHEMA_VERSION:
        raise ValueError(
            f"{origin} uses config schema {version}, this deeplabv3p ({__version__}) reads up to "
            f"{CONFIG_SCHEMA_VERSION}: upgrade with `pip install -U deeplabv3p`"
        )
    unknown = sorted(
        set(data) - {"schema_version", "architecture", "model_config", "pretrained_cfg", "library_version"}
    )
    if unknown:
        raise ValueError(f"{origin}: unknown top-level key(s) {unknown}")
    config = ModelConfig.from_dict(data["model_config"])
    pretrained_cfg = PretrainedCfg.from_dict(data.get("pretrained_cfg") or {"architecture": config.architecture})
    if data.get("architecture", config.architecture) != config.architecture:
        raise ValueError(
            f"{origin}: architecture {data['architecture']!r} disagrees with model_config.architecture "
            f"{config.architecture!r}"
        )
    if pretrained_cfg.num_classes is not None and pretrained_cfg.num_classes != config.num_classes:
        raise ValueError(
            f"{origin}: pretrained_cfg.num_classes={pretrained_cfg.num_classes} disagrees with "
            f"model_config.num_classes={config.num_classes}"
        )
    return config, pretrained_cfg


def read_config(source: str | Path) -> tuple[ModelConfig, PretrainedCfg]:
    """The `ModelConfig` and `PretrainedCfg` of a saved model (folder or ``hf-hub:`` id)."""
    path = source_file(source, CONFIG_NAME)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return parse_config(data, origin=str(path))


def pretrained_cfg_of(model: DeepLabV3Plus) -> PretrainedCfg:
    """The `PretrainedCfg` saved with `model`: its own, made consistent with its config (classes, align_corners)."""
    config = model.config
    pretrained_cfg = getattr(model, "pretrained_cfg", None)
    if pretrained_cfg is None:
        return PretrainedCfg(architecture=config.architecture, num_classes=config.num_classes)
    if pretrained_cfg.num_classes not in (None, config.num_classes):
        pretrained_cfg = pretrained_cfg.for_new_classes(config.num_classes, config.architecture)
    return pretrained_cfg.replace(num_classes=config.num_classes, align_corners=config.align_corners)


def save_pretrained(
    model: DeepLabV3Plus, save_directory: str | Path, *, pretrained_cfg: PretrainedCfg | None = None
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card into `save_directory`.

    Each file is written to a temporary name and renamed, so a crash never leaves a half-written file. Files of the
    same names are replaced; other files in the folder are left alone.

    Args:
        model: a `DeepLabV3Plus`.
        save_directory: the folder (created if missing).
        pretrained_cfg: metadata to write instead of ``model.pretrained_cfg``.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"model must be a deeplabv3p DeepLabV3Plus, got {type(model).__name__}")
    save_directory = Path(save_directory)
    if save_directory.exists() and not save_directory.is_dir():
        raise ValueError(f"save_directory {str(save_directory)!r} exists and is not a folder")
    save_directory.mkdir(parents=True, exist_ok=True)
    pretrained_cfg = pretrained_cfg or pretrained_cfg_of(model)
    save_state_dict(model.state_dict(), save_directory / WEIGHTS_NAME)
    atomic_write_text(save_directory / CONFIG_NAME, json.dumps(config_dict(config, pretrained_cfg), indent=2) + "\n")
    atomic_write_text(save_directory / CARD_NAME, model_card(config, pretrained_cfg))
    return save_directory


def push_to_hub(
    model: DeepLabV3Plus,
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
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory(prefix="deeplabv3p-push-") as tmp:
        save_pretrained(model, tmp, pretrained_cfg=pretrained_cfg_of(model).replace(hf_hub_id=repo_id))
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
    return str(getattr(info, "commit_url", info))
