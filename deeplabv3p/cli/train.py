"""``deeplabv3p train``, ``evaluate`` and ``demo``: the training package behind flags. The recipe flags of ``train``
are the fields of `TrainConfig`; everything else of the training package loads only when a command runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..train.config import TrainConfig
from ..version import __version__
from .common import add_dataset_args, is_main_process, model_from_args, source_from_args
from .flags import add_options, option_values, parse_model_kwargs

if TYPE_CHECKING:
    from ..train.datasets import SegmentationDataset

RECIPE_FILE = "recipe.json"
DEFAULT_VAL_SPLIT = "val"


def add_train(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "train", help=help,
        description="Fine-tune with mmseg's recipe. Multi-GPU: torchrun --nproc_per_node N -m deeplabv3p train ... "
        "With --recipe ARCH.TAG the published row's schedule is used on its dataset (in its official layout), the "
        "published total batch shared over the processes; any flag given overrides it.",
    )  # fmt: skip
    add_dataset_args(p)
    p.add_argument("--recipe", metavar="ARCH.TAG", help="train with this zoo row's mmseg schedule (and architecture)")
    p.add_argument("--model", help="architecture (deeplabv3plus_r50_d8), ARCH.TAG, or a model folder")
    p.add_argument("--pretrained", help="weights to start from: a tag, a dataset name (cityscapes) or a file")
    p.add_argument(
        "--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
        help="create_model overrides, e.g. encoder=convnext_tiny output_stride=16, or in_chans=4 "
        "mean=(...) std=(...) for multi-band images (num_classes: the dataset's)",
    )  # fmt: skip
    p.add_argument("--encoder-pretrained", action="store_true", help="start the encoder from timm's ImageNet weights")
    p.add_argument("--train-split", default="train", help="training split (default train)")
    p.add_argument(
        "--val-split",
        help="validation split, 'none' to skip (default: val where the dataset has one; a named split must exist)",
    )
    p.add_argument(
        "--samples-per-epoch", type=int, metavar="N",
        help="--layout rasters: random training windows per epoch (default: as many as tile the training rasters)",
    )  # fmt: skip
    p.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    add_options(p.add_argument_group("recipe (deeplabv3p.train.TrainConfig)"), TrainConfig)


def _raster_options(args: argparse.Namespace, training: bool) -> dict[str, Any]:
    """The rasters layout's options from --raster-window, --bands, --samples-per-epoch and --raster-margin: random
    windows for training, a grid (with its margin) for validation and evaluation. Given with another layout, the
    dataset refuses them."""
    from ..train.layouts import RASTERS
    from ..train.raster_data import GRID, RANDOM

    options: dict[str, Any] = {}
    if args.raster_window is not None:
        options["window"] = args.raster_window
    if training and getattr(args, "samples_per_epoch", None) is not None:
        options["samples_per_epoch"] = args.samples_per_epoch
    if args.bands is not None:
        options["bands"] = args.bands
    if not training and args.raster_margin is not None:
        options["margin"] = args.raster_margin
    if args.layout == RASTERS:
        options["sampling"] = RANDOM if training else GRID
    return options


def _open_split(
    args: argparse.Namespace,
    split: str,
    dataset: str,
    in_chans: int,
    model_rules: dict[str, Any] | None = None,
    training: bool = False,
) -> SegmentationDataset:
    """The `split` of --data in --layout (default "auto": the layout of the weights' or recipe's zoo `dataset`
    unless --data holds classes.json). `model_rules` (evaluate: the weights' reduce_zero_label and ignore_index)
    apply to trees without a zoo dataset's rules; --reduce-zero-label to every tree. `training`: the split is
    trained on (random windows of rasters)."""
    from ..pretrained.zoo import DATASETS
    from ..train.datasets import SegmentationDataset
    from ..train.layouts import choose_layout

    zoo = dataset if dataset in DATASETS else None  # a model trained on a folder names the folder
    layout = args.layout or "auto"
    rules = dict(model_rules or {})
    if rules and choose_layout(Path(args.data), layout, zoo).dataset is not None:
        rules = {}  # the zoo's rules
    if args.reduce_zero_label is not None:
        rules["reduce_zero_label"] = args.reduce_zero_label
    rules.update(_raster_options(args, training))
    return SegmentationDataset(args.data, split, layout=layout, dataset=zoo, in_chans=in_chans, **rules)


def _train_data(args: argparse.Namespace, dataset: str, in_chans: int = 3) -> tuple[Any, Any]:
    """The training and validation splits of --data (in --layout, or the layout of the recipe's dataset), read for
    a model of `in_chans` bands."""
    from ..train.reproduce import check_split_size

    train_set = _open_split(args, args.train_split, dataset, in_chans, training=True)
    if is_main_process() and (message := check_split_size(train_set)):
        print(f"deeplabv3p train: warning: {message}", file=sys.stderr)
    val_set = None
    if args.val_split is None:  # the default: val where there is one
        try:
            val_set = _open_split(args, DEFAULT_VAL_SPLIT, dataset, in_chans)
        except FileNotFoundError as e:
            if is_main_process():
                print(f"deeplabv3p train: no {DEFAULT_VAL_SPLIT!r} split ({e}); training without validation")
    elif args.val_split.lower() != "none":
        try:
            val_set = _open_split(args, args.val_split, dataset, in_chans)
        except FileNotFoundError as e:  # a split asked for by name (a typo?) is never skipped silently
            raise FileNotFoundError(f"--val-split {args.val_split!r}: {e}; or --val-split none") from None
    return train_set, val_set


def seed_of(args: argparse.Namespace) -> int:
    """The run's seed: --seed, else `TrainConfig`'s default (a recipe keeps it)."""
    return int(getattr(args, "seed", TrainConfig.seed))  # a dataclass field's default is also its class attribute


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..atomic import atomic_write_text
    from ..pretrained.registry import get_pretrained_cfg
    from ..train.recipes import recipe_for, resolve_recipe
    from ..train.trainer import fit

    if args.recipe is None and args.model is None:
        raise ValueError("train needs --model (an architecture, ARCH.TAG or a model folder) or --recipe ARCH.TAG")
    row = get_pretrained_cfg(args.recipe) if args.recipe else None
    train_set, val_set = _train_data(args, row.dataset if row is not None else "")
    model_name = args.model or row.architecture  # type: ignore[union-attr]
    model_kwargs = {"num_classes": train_set.num_classes, **parse_model_kwargs(args.model_kwargs)}
    if row is not None and "." not in model_name and not Path(model_name).is_dir():
        model_kwargs.setdefault("align_corners", row.align_corners)
    torch.manual_seed(seed_of(args))  # the freshly initialised layers too: --seed makes the whole run repeatable
    model = model_from_args(model_name, args.pretrained, encoder_pretrained=args.encoder_pretrained, **model_kwargs)
    if model.config.in_chans != train_set.in_chans:  # a multi-band model: read the splits for its bands
        train_set, val_set = _train_data(args, row.dataset if row is not None else "", model.config.in_chans)
    overrides = option_values(args, TrainConfig)
    kwargs: dict[str, Any] = dict(overrides)
    if row is not None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        config, record = resolve_recipe(recipe_for(row), world_size, overrides)
        kwargs = {"config": config}
        if is_main_process():
            print("deeplabv3p train: recipe " + json.dumps(record, indent=2))
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / RECIPE_FILE, json.dumps(record, indent=2) + "\n")
    result = fit(
        model, train_set, val_set, out=args.out, resume=args.resume, device=args.device,
        progress=not args.no_progress, **kwargs,
    )  # fmt: skip
    if result.best_path is not None and result.best_metrics is not None and is_main_process():
        print(f"best mIoU {result.best_metrics['mIoU']:.2f} at iteration {result.best_iteration}: {result.best_path}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "evaluate", help=help,
        description="Runs every image through predict() with the weights' test settings and compares with the "
        "labels at their original size. With published weights (--model ARCH.TAG) --data may be the dataset as it "
        "unpacks (the layout is the tag's dataset's), and the measured mIoU is printed beside the published one. "
        "The split's size is checked against the official one and its labels are audited first. Under torchrun the "
        "images are shared out over the processes.",
    )  # fmt: skip
    add_dataset_args(p)
    p.add_argument("--model", required=True, help="ARCH.TAG, an architecture with --pretrained, or a model folder")
    p.add_argument("--pretrained", help="weights: a tag, a dataset name or a file")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--mode", choices=["whole", "slide"], help="inference mode (default: the model's)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    p.add_argument("--no-audit", action="store_true", help="skip reading every label file before the run")
    p.add_argument("--json", metavar="PATH", help="also write metrics, published numbers, weights and settings here")


def run_evaluate(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..atomic import atomic_write_text
    from ..fields import check_output_file
    from ..inference.model import create_model
    from ..inference.pipeline import resolve_settings
    from ..pretrained.download import sha256_file
    from ..train.checkpoint import json_safe
    from ..train.evaluation import evaluate
    from ..train.layouts import RASTERS
    from ..train.metrics import format_table
    from ..train.reproduce import (
        audit_split,
        check_split_size,
        compare_with_published,
        comparison_line,
        dataset_record,
    )  # fmt: skip

    if args.json:  # checked before the evaluation, which it would otherwise fail after
        check_output_file("--json", args.json)
    source = source_from_args(args.model, args.pretrained, default=True).fetched()  # fetched once, then recorded
    model, weights_file = create_model(source), source.weights_file()
    cfg = model.pretrained_cfg
    assert cfg is not None  # create_model always sets it
    rules: dict[str, Any] = {"reduce_zero_label": cfg.reduce_zero_label, "ignore_index": cfg.ignore_index}
    if args.layout == RASTERS and args.bands is None and cfg.bands is not None:
        rules["bands"] = cfg.bands  # the bands the weights were trained on, as predict reads them
    dataset = _open_split(args, args.split, cfg.dataset, model.config.in_chans, rules)
    if dataset.num_classes != model.num_classes:
        raise ValueError(f"the model predicts {model.num_classes} classes but {args.data} has {dataset.num_classes}")
    settings = resolve_settings(model, mode=args.mode, tta=args.tta)
    progress = not args.no_progress
    ctx = distributed.setup(args.device)  # under torchrun, every process evaluates its share of the images
    try:
        if ctx.is_main and (message := check_split_size(dataset)):
            print(f"deeplabv3p evaluate: warning: {message}", file=sys.stderr)
        if not args.no_audit:
            audit_split(dataset, progress=progress)
        metrics = evaluate(model, dataset, mode=args.mode, tta=args.tta, device=ctx.device, progress=progress)
    finally:
        distributed.teardown(ctx)
    if not ctx.is_main:
        return 0
    comparison = compare_with_published(metrics, cfg, args.tta, args.split)
    print(format_table(metrics))
    print(comparison_line(comparison))
    if args.json:
        record = {
            **metrics,
            "published": {k: cfg.metrics.get(k) if cfg.tag else None for k in ("mIoU", "mIoU_ms_flip")},
            "comparison": comparison,
            "model": cfg.name or args.model,
            "weights": {
                "file": str(weights_file) if weights_file is not None else None,
                "sha256": sha256_file(weights_file) if weights_file is not None else None,
                "source_url": cfg.url,
                "source_sha256_prefix": cfg.sha256_prefix,
            },
            "settings": {**dataclasses.asdict(settings), "world_size": ctx.world_size, "device": str(ctx.device)},
            "data": dataset_record(dataset),
            "library_version": __version__,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(json_safe(record), indent=2) + "\n")
    return 0


def add_demo(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "demo", help=help,
        description="Makes a small synthetic dataset, trains a small DeepLabV3+ on it (CPU, a few minutes, no "
        "download), prints the per-class IoU table and writes overlays of held-out images.",
    )  # fmt: skip
    p.add_argument("--out", default="deeplabv3p-demo", help="output folder (default deeplabv3p-demo)")
    p.add_argument("--iters", type=int, help="training iterations (default: the demo's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_demo(args: argparse.Namespace) -> int:
    from ..train.demo import run_demo
    from ..train.metrics import format_table

    result = run_demo(args.out, iters=args.iters, seed=args.seed, device=args.device, progress=not args.no_progress)
    print("\ndemo result: the trained model on the held-out images")
    print(format_table(result.metrics))
    print(f"model: {result.model_path}\noverlays: {result.overlays[0].parent}\ntime: {result.seconds:.0f} s")
    return 0
