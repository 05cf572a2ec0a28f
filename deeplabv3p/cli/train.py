"""``deeplabv3p train``, ``evaluate`` and ``demo``: the training package behind flags. The recipe flags of ``train``
are the fields of `TrainConfig`; everything else of the training package loads only when a command runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..train.config import TrainConfig
from .common import add_dataset_args, add_options, is_main_process, option_values, parse_model_kwargs, weights_argument


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune on a dataset folder (runs under torchrun for multi-GPU)",
        description="Fine-tune with mmseg's recipe. Multi-GPU: torchrun --nproc_per_node N -m deeplabv3p train ...",
    )  # fmt: skip
    add_dataset_args(p)
    p.add_argument("--model", required=True, help="architecture (deeplabv3plus_r50_d8), ARCH.TAG, or a model folder")
    p.add_argument("--pretrained", help="weights to start from: a tag, a dataset name (cityscapes) or a file")
    p.add_argument(
        "--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
        help="create_model overrides, e.g. encoder=convnext_tiny output_stride=16 (num_classes: the dataset's)",
    )  # fmt: skip
    p.add_argument("--encoder-pretrained", action="store_true", help="start the encoder from timm's ImageNet weights")
    p.add_argument("--train-split", default="train", help="training split (default train)")
    p.add_argument("--val-split", default="val", help="validation split, 'none' to skip (default val)")
    p.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    add_options(p.add_argument_group("recipe (deeplabv3p.train.TrainConfig)"), TrainConfig)


def run_train(args: argparse.Namespace) -> int:
    from ..pretrained.factory import create_model
    from ..train.datasets import SegmentationDataset
    from ..train.trainer import fit

    data_kwargs: dict[str, Any] = {"reduce_zero_label": bool(args.reduce_zero_label)}
    train_set = SegmentationDataset(args.data, args.train_split, **data_kwargs)
    val_set = None
    if args.val_split.lower() != "none":
        if (Path(args.data) / "images" / args.val_split).is_dir():
            val_set = SegmentationDataset(args.data, args.val_split, **data_kwargs)
        elif is_main_process():
            print(f"deeplabv3p train: no {args.val_split!r} split in {args.data}; training without validation")
    model_kwargs = {"num_classes": train_set.num_classes, **parse_model_kwargs(args.model_kwargs)}
    pretrained = weights_argument(args.model, args.pretrained, default=False)
    model = create_model(args.model, pretrained, encoder_pretrained=args.encoder_pretrained, **model_kwargs)
    overrides = option_values(args, TrainConfig)
    result = fit(
        model, train_set, val_set, out=args.out, resume=args.resume, device=args.device,
        progress=not args.no_progress, **overrides,
    )  # fmt: skip
    if result.best_path is not None and result.best_metrics is not None and is_main_process():
        print(f"best mIoU {result.best_metrics['mIoU']:.2f} at iteration {result.best_iteration}: {result.best_path}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="mIoU/mAcc/aAcc of a model on a dataset split, as mmseg computes them",
        description="Runs every image through predict() and compares with the masks at their original size. "
        "Under torchrun the images are shared out over the processes.",
    )  # fmt: skip
    add_dataset_args(p)
    p.add_argument("--model", required=True, help="ARCH.TAG, an architecture with --pretrained, or a model folder")
    p.add_argument("--pretrained", help="weights: a tag, a dataset name or a file")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--mode", choices=["whole", "slide"], help="inference mode (default: the model's)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    p.add_argument("--json", metavar="PATH", help="also write the metrics to this JSON file")


def run_evaluate(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..atomic import atomic_write_text
    from ..pretrained.factory import create_model
    from ..train.checkpoint import json_safe
    from ..train.datasets import SegmentationDataset
    from ..train.metrics import format_table
    from ..train.trainer import evaluate

    model = create_model(args.model, weights_argument(args.model, args.pretrained, default=True))
    cfg = model.pretrained_cfg
    assert cfg is not None  # create_model always sets it
    reduce = cfg.reduce_zero_label if args.reduce_zero_label is None else args.reduce_zero_label
    dataset = SegmentationDataset(args.data, args.split, reduce_zero_label=reduce, ignore_index=cfg.ignore_index)
    if dataset.num_classes != model.num_classes:
        raise ValueError(f"the model predicts {model.num_classes} classes but {args.data} has {dataset.num_classes}")
    ctx = distributed.setup(args.device)  # under torchrun, every process evaluates its share of the images
    try:
        progress = not args.no_progress
        metrics = evaluate(model, dataset, mode=args.mode, tta=args.tta, device=ctx.device, progress=progress)
    finally:
        distributed.teardown(ctx)
    if not ctx.is_main:
        return 0
    print(format_table(metrics))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(json_safe(metrics), indent=2) + "\n")
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="offline demo: synthetic dataset, CPU fine-tuning, per-class IoU, overlays",
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
