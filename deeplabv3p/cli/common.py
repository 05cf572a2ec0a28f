"""What the commands share: how --model/--pretrained/--checkpoint become a model, and the dataset flags (the
torch-free argument helpers live in `deeplabv3p.cli.flags`)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from ..train.names import LAYOUT_NAMES, ZOO_LAYOUT_NAMES
from .flags import parse_bands, parse_size

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus
    from ..pretrained.source import Source

__all__ = [
    "add_dataset_args",
    "is_main_process",
    "model_from_args",
    "pretrained_argument",
    "source_from_args",
]


def pretrained_argument(model: str, pretrained: bool | str | None, default: bool = False) -> bool | str | None:
    """`resolve_source`'s ``pretrained`` for ``--model`` / ``--pretrained``: a saved folder or ``hf-hub:`` id keeps
    its own weights (None), ``ARCH.TAG`` loads the tag's (True), a bare architecture gets `default`."""
    from ..pretrained.registry import split_model_name
    from ..pretrained.source import is_saved_name

    if pretrained is None and not is_saved_name(model):
        return split_model_name(model)[1] is not None or default
    return pretrained


def source_from_args(
    model: str,
    pretrained: bool | str | None = None,
    checkpoint: str | None = None,
    *,
    default: bool = False,
    require_weights: bool = False,
) -> Source:
    """Where the weights of ``--model``, ``--pretrained`` and ``--checkpoint`` come from, for every command.

    A saved folder or ``hf-hub:`` id loads its own weights and ``ARCH.TAG`` the tag's, unless `pretrained` or
    `checkpoint` names others; a bare architecture gets `default` (True: its Cityscapes weights, False: none).
    `require_weights` refuses to go on without weights.
    """
    from ..pretrained.source import resolve_source

    pretrained = pretrained_argument(model, pretrained, default)
    if require_weights and pretrained is False and checkpoint is None:
        raise ValueError(
            f"this command needs trained weights, and --model {model!r} is an architecture alone: pass a saved model "
            "folder, ARCH.TAG, --pretrained [TAG|FILE] or --checkpoint FILE"
        )
    return resolve_source(model, pretrained, checkpoint)


def model_from_args(
    model: str,
    pretrained: bool | str | None = None,
    checkpoint: str | None = None,
    *,
    default: bool = False,
    require_weights: bool = False,
    **kwargs: Any,
) -> DeepLabV3Plus:
    """The model of ``--model``, ``--pretrained`` and ``--checkpoint`` (see `source_from_args`); `kwargs` are
    create_model overrides (``--model-kwargs``)."""
    from ..inference.model import create_model

    source = source_from_args(model, pretrained, checkpoint, default=default, require_weights=require_weights)
    return create_model(source, **kwargs)


def is_main_process() -> bool:
    """False in the processes of a torchrun launch other than rank 0 (they stay quiet)."""
    return os.environ.get("RANK", "0") == "0"


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True,
        help="dataset folder: images/SPLIT, masks/SPLIT, classes.json; or a zoo dataset as it unpacks (see --layout)",
    )  # fmt: skip
    p.add_argument(
        "--layout", choices=list(LAYOUT_NAMES), metavar="LAYOUT",
        help="how --data is laid out: folder (images/masks/classes.json), rasters (the same tree of large GeoTIFFs "
        "read window by window: images/SPLIT/NAME.tif, masks/SPLIT/NAME.tif; the [geo] extra), mmseg "
        f"(img_dir/ann_dir), or a zoo dataset's official layout ({', '.join(ZOO_LAYOUT_NAMES)}); default: folder "
        "when --data has classes.json, else the layout of the weights' (or recipe's) dataset",
    )  # fmt: skip
    p.add_argument(
        "--raster-window", type=parse_size, metavar="HxW",
        help="--layout rasters: the window read from the rasters as one sample (default 512x512); training draws "
        "random windows, validation and evaluate tile the rasters with them",
    )  # fmt: skip
    p.add_argument(
        "--bands", type=parse_bands, metavar="B,B,B",
        help="--layout rasters: the image rasters' bands to read, 1-based as GDAL counts (4,3,2), as predict "
        "reads them",
    )  # fmt: skip
    p.add_argument(
        "--raster-margin", type=int, metavar="PIXELS",
        help="--layout rasters: pixels of context read around each validation/evaluation window (its labels "
        "there ignored, so each pixel counts once); default 0",
    )  # fmt: skip
    p.add_argument(
        "--reduce-zero-label", action=argparse.BooleanOptionalAction, default=None,
        help="label 0 means 'unlabelled' (mmseg's reduce_zero_label) for folder/mmseg trees; evaluate defaults to "
        "the model's setting",
    )  # fmt: skip
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
