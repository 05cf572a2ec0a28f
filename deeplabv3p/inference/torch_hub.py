"""``torch.hub`` entry points, one per registered architecture, generated from the registry.

The repository's ``hubconf.py`` puts `entrypoints()` into its namespace, so that::

    model = torch.hub.load("deeplabv3p/deeplabv3p", "deeplabv3plus_r50_d8", pretrained="cityscapes")

builds the architecture through `create_model`, and ``torch.hub.list`` / ``torch.hub.help`` show every architecture
with the weights published for it. Adding an architecture to the zoo adds its entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..pretrained.model_card import dataset_name
from ..pretrained.registry import get_model_config, list_models
from ..pretrained.zoo import PRETRAINED_CFGS
from .model import DeepLabV3Plus, create_model

GITHUB_REPO = "deeplabv3p/deeplabv3p"

# What hubconf.py declares as ``dependencies``: the import names of pyproject's runtime dependencies.
DEPENDENCIES = ["torch", "torchvision", "timm", "tqdm", "huggingface_hub", "safetensors", "numpy", "PIL"]


def _weights_lines(architecture: str) -> list[str]:
    rows = [cfg for cfg in PRETRAINED_CFGS.values() if cfg.architecture == architecture]
    if not rows:
        return ["Published weights: none (pretrained=True is an error; pass a checkpoint path, or train it)."]
    width = max(len(cfg.tag) for cfg in rows)
    lines = ['Published weights (pretrained="TAG", or a dataset name for its best row):']
    for cfg in rows:
        miou = cfg.metrics.get("mIoU")
        ms = cfg.metrics.get("mIoU_ms_flip")
        score = f"mIoU {miou:g}" if miou is not None else "mIoU -"
        score += f" (ms+flip {ms:g})" if ms is not None else ""
        lines.append(f"    {cfg.tag.ljust(width)}  {dataset_name(cfg.dataset)}, {score}")
    return lines


def entrypoint_doc(architecture: str) -> str:
    """The docstring ``torch.hub.help`` shows for an architecture's entry point."""
    config = get_model_config(architecture)
    kwargs = ", ".join(f"{k}={v!r}" for k, v in config.encoder_kwargs.items())
    encoder = f"timm `{config.encoder}`" + (f" ({kwargs})" if kwargs else "")
    lines = [
        f"DeepLabV3+ `{architecture}`: {encoder} encoder, output stride {config.output_stride}, "
        f"{config.num_classes} classes unless weights or num_classes say otherwise.",
        "",
        "Args:",
        "    pretrained: False (random init), True (the best Cityscapes weights), a tag or dataset name from",
        "        the list below, or a local checkpoint (.safetensors, mmseg .pth, or a saved folder).",
        "    **kwargs: deeplabv3p.create_model keywords: num_classes, in_chans, mean, std, encoder_pretrained,",
        "        checkpoint_path, output_stride, ...",
        "",
        *_weights_lines(architecture),
        "",
        "Example:",
        f'    model = torch.hub.load("{GITHUB_REPO}", "{architecture}", pretrained="cityscapes").eval()',
        '    result = model.predict("street.jpg")',
    ]
    return "\n".join(lines)


def _entrypoint(architecture: str) -> Callable[..., DeepLabV3Plus]:
    def entry(pretrained: bool | str | Path = False, **kwargs: Any) -> DeepLabV3Plus:
        return create_model(architecture, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = architecture
    entry.__doc__ = entrypoint_doc(architecture)
    entry.__module__ = "hubconf"
    return entry


def entrypoints() -> dict[str, Callable[..., DeepLabV3Plus]]:
    """``{architecture: entry point}`` for every registered architecture, for ``hubconf.py``'s namespace."""
    return {name: _entrypoint(name) for name in list_models()}
