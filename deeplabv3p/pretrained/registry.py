"""Lookups over the zoo: list architectures and pretrained tags, resolve ``ARCH.TAG`` names, suggest close names."""

from __future__ import annotations

import difflib
import fnmatch
import re

from ..models.config import ModelConfig
from .config import PretrainedCfg
from .zoo import ARCHITECTURES, DATASETS, PRETRAINED_CFGS


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _matches(name: str, patterns: str | list[str]) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def list_models(filter: str | list[str] = "", pretrained: bool = False) -> list[str]:
    """Architecture names, optionally filtered by shell-style pattern(s) and to those with published weights."""
    names = [n for n in ARCHITECTURES if not filter or _matches(n, filter)]
    if pretrained:
        with_weights = {cfg.architecture for cfg in PRETRAINED_CFGS.values()}
        names = [n for n in names if n in with_weights]
    return sorted(names, key=_natural_key)


def list_pretrained(filter: str | list[str] = "") -> list[str]:
    """Pretrained ``ARCH.TAG`` names, optionally filtered by shell-style pattern(s)."""
    return sorted((n for n in PRETRAINED_CFGS if not filter or _matches(n, filter)), key=_natural_key)


def _unknown(kind: str, name: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} See deeplabv3p.list_models() / list_pretrained().")


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"arch.tag"`` -> ``("arch", "tag")``; ``"arch"`` -> ``("arch", None)``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty str, got {name!r}")
    arch, _, tag = name.partition(".")
    return arch, tag or None


def get_model_config(name: str) -> ModelConfig:
    """The registered architecture config for ``name`` (a tag, if given, is ignored)."""
    arch, _ = split_model_name(name)
    if arch not in ARCHITECTURES:
        raise _unknown("architecture", arch, list(ARCHITECTURES))
    return ARCHITECTURES[arch]


def best_tag(architecture: str, dataset: str) -> str:
    """The architecture's best single-scale (highest mIoU) tag for ``dataset``."""
    rows = [c for c in PRETRAINED_CFGS.values() if c.architecture == architecture and c.dataset == dataset]
    if not rows:
        return ""
    return max(rows, key=lambda c: c.metrics.get("mIoU", 0.0)).tag


def get_pretrained_cfg(name: str, tag: str | None = None) -> PretrainedCfg:
    """Metadata of published weights: ``get_pretrained_cfg("arch.tag")`` or ``("arch", "tag-or-dataset")``.

    A dataset name as tag (``"cityscapes"``) picks the architecture's best single-scale row for that dataset.
    Nothing is built or downloaded.
    """
    arch, name_tag = split_model_name(name)
    get_model_config(arch)
    tag = tag or name_tag
    if not tag:
        raise ValueError(f"{name!r} names no weights; pass 'ARCH.TAG'. Tags of {arch}: {_tags_of(arch)}")
    if tag in DATASETS:
        tag = best_tag(arch, tag) or tag
    full = f"{arch}.{tag}"
    if full not in PRETRAINED_CFGS:
        tags = _tags_of(arch)
        close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"no pretrained weights {full!r}.{hint} Weights published for {arch}: "
            f"{tags or 'none'}; dataset aliases: {sorted({c.dataset for c in _cfgs_of(arch)})}"
        )
    return PRETRAINED_CFGS[full]


def _cfgs_of(arch: str) -> list[PretrainedCfg]:
    return [c for c in PRETRAINED_CFGS.values() if c.architecture == arch]


def _tags_of(arch: str) -> list[str]:
    return sorted((c.tag for c in _cfgs_of(arch)), key=_natural_key)
