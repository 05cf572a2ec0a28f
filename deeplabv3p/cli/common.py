"""What the commands share: how --model/--pretrained become create_model arguments, dataset flags,
``KEY=VALUE`` model overrides and ``HxW`` sizes."""

from __future__ import annotations

import argparse
import ast
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..pretrained.zoo import DATASETS


def weights_argument(model: str, pretrained: str | None, default: bool) -> bool | str | None:
    """`create_model`'s ``pretrained`` for ``--model``/``--pretrained``: a saved folder or Hub id loads its own
    weights, ARCH.TAG loads the tag's, a bare architecture gets `default`."""
    if pretrained:
        return pretrained
    if Path(model).is_dir() or model.startswith("hf-hub:"):
        return None
    return True if "." in model else default


def is_main_process() -> bool:
    """False in the processes of a torchrun launch other than rank 0 (they stay quiet)."""
    return os.environ.get("RANK", "0") == "0"


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    layouts = ["folder", "mmseg", *DATASETS]  # every zoo dataset has its official layout (train.layouts)
    p.add_argument(
        "--data", required=True,
        help="dataset folder: images/SPLIT, masks/SPLIT, classes.json; or a zoo dataset as it unpacks (see --layout)",
    )  # fmt: skip
    p.add_argument(
        "--layout", choices=layouts, metavar="LAYOUT",
        help="how --data is laid out: folder (images/masks/classes.json), mmseg (img_dir/ann_dir), or a zoo "
        f"dataset's official layout ({', '.join(layouts[2:])}); default: folder when --data has "
        "classes.json, else the layout of the weights' (or recipe's) dataset",
    )  # fmt: skip
    p.add_argument(
        "--reduce-zero-label", action=argparse.BooleanOptionalAction, default=None,
        help="label 0 means 'unlabelled' (mmseg's reduce_zero_label) for folder/mmseg trees; evaluate defaults to "
        "the model's setting",
    )  # fmt: skip
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_model_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=3", "encoder_kwargs={'channels': (8, 16, 32, 64)}"]`` -> a dict; values are Python
    literals where they parse as one, strings otherwise (timm's ``--model-kwargs`` convention)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-kwargs entries must be KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024); a single number means a square."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW such as 512x1024, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"size must be HxW such as 512x1024, got {text!r}")
    return values
