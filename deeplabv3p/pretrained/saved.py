"""The saved-model format, shared by local folders and Hugging Face Hub repos: reading its config, writing it.

A saved model is a folder (or Hub repo) holding

- ``config.json``: ``{"schema_version", "architecture", "model_config", "pretrained_cfg", "library_version"}``,
  i.e. `ModelConfig.to_dict()` (how to build the network) and `PretrainedCfg.to_dict()` (what the weights are);
- ``model.safetensors``: the state dict in our key layout;
- ``README.md``: a generated model card.

``create_model("path/to/folder")`` and ``create_model("hf-hub:org/name[@revision]")`` read it back (`read_config`,
through `source.saved_file`); `save_pretrained` writes it, and `hub.push_to_hub` uploads what it writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..atomic import atomic_folder, atomic_write_text, is_temporary, remove_stale
from ..fields import JsonRecord, check_int, nest, record_type
from ..models.config import ModelConfig
from ..version import __version__
from .config import CONFIG_SCHEMA_VERSION, DESCRIPTIVE_FIELDS, PretrainedCfg, pretrained_cfg_for
from .model_card import model_card
from .state_dict import WEIGHTS_NAME, save_state_dict

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork

CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
_CONFIG_KEYS = frozenset({"schema_version", "architecture", "model_config", "pretrained_cfg", "library_version"})
SAVED_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
_Record = TypeVar("_Record", bound=JsonRecord)

# What a config.json may leave out (and so takes its default). Every version writes every field; of those, only the
# descriptive metadata of the weights may be missing: a missing field that shapes the network or its predictions
# means a damaged or hand-edited file, and guessing it would give another model. Version 1 wrote the test settings
# as flat fields of pretrained_cfg (``test_scale``, ``test_mode``...), read here into version 2's nested ``test``.
_OPTIONAL_FIELDS: dict[str, frozenset[str]] = {
    "model_config": frozenset(),
    "pretrained_cfg": frozenset(DESCRIPTIVE_FIELDS),
}
# Fields added by a later schema: a file of an earlier schema lacks them and means their default (bands: None,
# the band rule every model used before).
_ADDED_IN: dict[str, dict[str, int]] = {"model_config": {}, "pretrained_cfg": {"bands": 3}}


def config_dict(config: ModelConfig, pretrained_cfg: PretrainedCfg) -> dict[str, Any]:
    """The content of ``config.json``."""
    return {
        "schema_version": CONFIG_SCHEMA_VERSION,
        "architecture": config.architecture,
        "model_config": config.to_dict(),
        "pretrained_cfg": pretrained_cfg.to_dict(),
        "library_version": __version__,
    }


def check_saved_encoder(encoder: str, origin: str) -> None:
    """A saved config names its encoder by timm architecture: ``hf-hub:`` or ``local-dir:`` names would make
    reading a config download from the Hub or read another folder, which loading a config never does."""
    if ":" in encoder:
        raise ValueError(
            f"{origin}: encoder {encoder!r} names a model for timm to fetch; a saved deeplabv3p config must name a "
            "timm architecture (e.g. 'resnet50' or 'convnext_tiny'), because reading a config never downloads "
            "anything. Build the model with that architecture name instead."
        )


def _missing(cls: type[JsonRecord], data: dict[str, Any], optional: frozenset[str] = frozenset()) -> list[str]:
    """The fields of `cls` (and, as ``record.field``, of its sub-records) that `data` lacks, less `optional`."""
    hints = typing.get_type_hints(cls)
    missing = []
    for f in dataclasses.fields(cls):
        if f.name in optional:
            continue
        if f.name not in data:
            missing.append(f.name)
        elif (sub := record_type(hints[f.name])) is not None and isinstance(data[f.name], dict):
            missing += [f"{f.name}.{name}" for name in _missing(sub, data[f.name])]
    return missing


def _record(cls: type[_Record], data: Any, section: str, version: int, origin: str) -> _Record:
    """`cls.from_dict(data)` of one section of a config.json, with every field it needs present."""
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: {section} must be a JSON object, got {type(data).__name__}")
    if version == 1:
        data = nest(cls, data)  # flat test settings -> the nested record
    added_later = frozenset(name for name, since in _ADDED_IN[section].items() if version < since)
    missing = _missing(cls, data, _OPTIONAL_FIELDS[section] | added_later)
    if missing:
        raise ValueError(
            f"{origin}: {section} lacks the field(s) {missing}, which config schema {version} requires (they "
            "shape the network or its predictions and have no default). The file is damaged or was edited; "
            "save the model again with save_pretrained()."
        )
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{origin}: {section}: {e}") from None


def parse_config(data: Any, origin: str = "config.json") -> tuple[ModelConfig, PretrainedCfg]:
    """Validate the content of a ``config.json`` (read from `origin`) and build its two records.

    Reading is strict: unknown keys, and missing fields other than the weights' descriptive metadata, are errors.
    """
    if not isinstance(data, dict) or "model_config" not in data:
        raise ValueError(f"{origin} is not a deeplabv3p config: expected an object with 'model_config'")
    version = check_int(f"{origin}: schema_version", data.get("schema_version"), 1)
    if version > CONFIG_SCHEMA_VERSION:
        raise ValueError(
            f"{origin} uses config schema {version}, this deeplabv3p ({__version__}) reads up to "
            f"{CONFIG_SCHEMA_VERSION}: upgrade with `pip install -U deeplabv3p`"
        )
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"{origin}: unknown top-level key(s) {unknown}")
    if "pretrained_cfg" not in data:
        raise ValueError(f"{origin}: no 'pretrained_cfg' (normalisation and test-time settings of the weights)")
    model_data = data["model_config"]
    if isinstance(model_data, dict) and isinstance(model_data.get("encoder"), str):
        check_saved_encoder(model_data["encoder"], f"{origin}: model_config")
    config = _record(ModelConfig, model_data, "model_config", version, origin)
    pretrained_cfg = _record(PretrainedCfg, data["pretrained_cfg"], "pretrained_cfg", version, origin)
    if data.get("architecture", config.architecture) != config.architecture:
        raise ValueError(
            f"{origin}: architecture {data['architecture']!r} disagrees with model_config.architecture "
            f"{config.architecture!r}"
        )
    if pretrained_cfg.num_classes != config.num_classes:
        raise ValueError(
            f"{origin}: pretrained_cfg.num_classes={pretrained_cfg.num_classes} disagrees with "
            f"model_config.num_classes={config.num_classes}"
        )
    return config, pretrained_cfg


def read_config(path: Path) -> tuple[ModelConfig, PretrainedCfg]:
    """The `ModelConfig` and `PretrainedCfg` in a saved model's ``config.json`` at `path`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return parse_config(data, origin=str(path))


def model_config(model: object) -> ModelConfig:
    """The `ModelConfig` of a deeplabv3p network; anything else is a TypeError."""
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"model must be a deeplabv3p DeepLabV3Plus, got {type(model).__name__}")
    return config


def _is_model_config(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "model_config" in data and "schema_version" in data


def _folder_kind(folder: Path) -> str:
    """``"missing"``, ``"empty"``, ``"model"`` (a deeplabv3p model folder, or the weights and other files of its
    names that an interrupted save leaves) or ``"foreign"``; temporaries of earlier writes do not count."""
    if not folder.exists():
        return "missing"
    names = {name for name in os.listdir(folder) if not is_temporary(name)}
    if not names:
        return "empty"
    if CONFIG_NAME in names:
        return "model" if _is_model_config(folder / CONFIG_NAME) else "foreign"
    return "model" if WEIGHTS_NAME in names and names <= set(SAVED_FILES) else "foreign"  # a save interrupted


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path) -> None:
    """Everything of `old` but the saved model's own files, hard-linked (or copied) into `new`."""
    for entry in os.scandir(old):
        if entry.name in SAVED_FILES or is_temporary(entry.name, of=SAVED_FILES):
            continue
        target = new / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, str(target))


def _can_swap(folder: Path) -> bool:
    """Whether a new folder can be built beside `folder` and renamed over it (not a mount point, parent writable)."""
    return not os.path.ismount(folder) and os.access(folder.parent, os.W_OK | os.X_OK)


def save_pretrained(
    model: DeepLabV3PlusNetwork,
    save_directory: str | Path,
    *,
    pretrained_cfg: PretrainedCfg | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card into `save_directory`.

    All or nothing: the model is written into a new folder beside `save_directory` that then takes its place in
    one step, so a crash, a full disk or a kill leaves the old model or the new one, never a mix. Other files of
    an existing model folder are kept (hard-linked into the new folder). Where the folder cannot be swapped (a
    mount point, a parent folder not writable) it is written in place with ``config.json`` removed first and
    written last, so an interrupted save never loads. Saved files get the usual permissions (0o666 less the
    umask). Temporaries a killed save left behind are removed.

    Args:
        model: a `DeepLabV3PlusNetwork` (or `deeplabv3p.DeepLabV3Plus`).
        save_directory: the folder (created if missing). An empty path is refused: it would mean the working
            directory.
        pretrained_cfg: metadata to write instead of ``model.pretrained_cfg``.
        overwrite: also save into a non-empty folder that is not a deeplabv3p model folder (its config.json and
            README.md are replaced, other files kept); without it such a folder is refused.
    """
    config = model_config(model)
    if not isinstance(save_directory, str | os.PathLike):
        raise TypeError(f"save_directory must be a folder path (str or Path), got {type(save_directory).__name__}")
    if not str(save_directory).strip():
        raise ValueError(
            f"save_directory must name a folder, got {save_directory!r}; pass '.' to save into the working directory"
        )
    check_saved_encoder(config.encoder, "save_pretrained")
    save_directory = Path(save_directory)
    folder = Path(os.path.realpath(save_directory))
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_directory {str(save_directory)!r} exists and is not a folder")
    kind = _folder_kind(folder)
    if kind == "foreign" and not overwrite:
        shown = sorted(name for name in os.listdir(folder) if not is_temporary(name))[:5]
        raise ValueError(
            f"save_directory {str(save_directory)!r} is not empty and is not a deeplabv3p model folder (it holds "
            f"{shown}); saving would replace its {CONFIG_NAME} and {CARD_NAME}. Choose another folder, or pass "
            "overwrite=True (--overwrite on the command line) if that is what you want."
        )
    pretrained_cfg = pretrained_cfg or pretrained_cfg_for(config, getattr(model, "pretrained_cfg", None))
    state_dict = model.state_dict()
    config_text = json.dumps(config_dict(config, pretrained_cfg), indent=2) + "\n"
    card = model_card(config, pretrained_cfg)

    def write(into: Path) -> None:
        (into / CONFIG_NAME).unlink(missing_ok=True)  # until the new one is written, the folder is no model
        save_state_dict(state_dict, into / WEIGHTS_NAME)
        atomic_write_text(into / CARD_NAME, card)
        atomic_write_text(into / CONFIG_NAME, config_text)

    remove_stale(folder, SAVED_FILES)
    remove_stale(folder.parent, [folder.name])
    if kind == "missing":
        folder.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty" or (kind != "missing" and not _can_swap(folder)):
        write(folder)
        return save_directory
    with atomic_folder(folder) as staging:
        if kind != "missing":
            _carry_over(folder, staging)
        write(staging)
    return save_directory
