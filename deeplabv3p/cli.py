"""Command line: ``deeplabv3p <command>`` (also ``python -m deeplabv3p``).

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)`` does the work.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .inference.export import DEFAULT_OPSET, check_onnx, export_onnx
from .pretrained.download import sha256_file
from .pretrained.factory import create_model
from .pretrained.hub import is_hub_id
from .pretrained.model_card import zoo_table
from .pretrained.registry import get_pretrained_cfg, list_models, list_pretrained, split_model_name
from .pretrained.weights import WeightsUnavailableError, load_into, read_state_dict
from .version import __version__


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list architectures or pretrained weights")
    p.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. '*r101*' or '*ade20k*'")
    p.add_argument("--pretrained", action="store_true", help="list pretrained ARCH.TAG names instead")
    p.add_argument(
        "--markdown", action="store_true", help="print the pretrained weights as the README's model-zoo table"
    )


def _run_list(args: argparse.Namespace) -> int:
    names = list_pretrained(args.pattern) if args.pretrained or args.markdown else list_models(args.pattern)
    if names:
        print(zoo_table(names) if args.markdown else "\n".join(names))
    return 0 if names else 1


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an mmseg DeepLabV3+ checkpoint into a Hub-ready folder",
        description="Convert an mmseg DeepLabV3+ checkpoint (.pth) into a folder with config.json, "
        "model.safetensors and a README.md model card, loadable with create_model(FOLDER) and ready to upload.",
    )
    p.add_argument("checkpoint", help="the mmseg checkpoint (.pth), or a .safetensors in either key layout")
    p.add_argument(
        "--model",
        required=True,
        help="ARCH.TAG whose metadata describes the weights (deeplabv3p list --pretrained), or ARCH for a "
        "checkpoint of your own (the class count is read from the checkpoint)",
    )
    p.add_argument("--out", required=True, help="output folder (created; files of the same names are replaced)")


def _run_convert(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    state_dict = read_state_dict(checkpoint)
    arch, tag = split_model_name(args.model)
    if tag is not None:
        expected = get_pretrained_cfg(args.model).sha256_prefix
        if expected and not sha256_file(checkpoint).startswith(expected):
            print(
                f"deeplabv3p convert: warning: the sha256 of {checkpoint} does not start with {expected}, the "
                f"published file of {args.model}: the metadata (metrics) may not describe these weights",
                file=sys.stderr,
            )
        model = create_model(args.model)
    else:
        if "classifier.conv.weight" not in state_dict:
            raise ValueError(f"{checkpoint} has no classifier weights (decode_head.conv_seg): is it a DeepLabV3+?")
        model = create_model(arch, num_classes=int(state_dict["classifier.conv.weight"].shape[0]))
    report = load_into(model, state_dict)
    if report.reinitialized:
        raise ValueError(
            f"{checkpoint} has another class count than {args.model} ({model.num_classes}): pass the matching "
            "tag, or the bare architecture to take the class count from the checkpoint"
        )
    out = model.eval().save_pretrained(args.out)
    print(f"wrote {out}/ (config.json, model.safetensors, README.md) for {model.pretrained_cfg.name}")
    return 0


# TrainConfig fields exposed by `train`: (field, argparse kwargs). Flags are the field names with dashes.
_TRAIN_OPTIONS: list[tuple[str, dict]] = [
    ("iters", {"type": int, "help": "optimiser steps (default 2000)"}),
    ("batch_size", {"type": int, "help": "images per step and process (default 8)"}),
    ("crop_size", {"type": int, "nargs": 2, "metavar": ("H", "W"), "help": "training crop (default 512 512)"}),
    (
        "scale",
        {
            "type": int,
            "nargs": 2,
            "metavar": ("A", "B"),
            "help": "mmseg resize target the 0.5-2.0 ratio multiplies, e.g. 2048 512 (default: image size)",
        },
    ),
    ("lr", {"type": float, "help": "SGD learning rate (default 0.01)"}),
    ("momentum", {"type": float, "help": "SGD momentum (default 0.9)"}),
    ("weight_decay", {"type": float, "help": "SGD weight decay (default 5e-4)"}),
    ("min_lr", {"type": float, "help": "PolyLR floor (default 1e-4)"}),
    ("encoder_lr_mult", {"type": float, "help": "encoder learning-rate multiplier (default 1.0)"}),
    ("freeze_encoder", {"action": "store_true", "default": None, "help": "train the decoder and classifier only"}),
    ("aux_weight", {"type": float, "help": "auxiliary head loss weight (default 0.4)"}),
    ("class_weight", {"type": float, "nargs": "+", "metavar": "W", "help": "one loss weight per class"}),
    ("avg_non_ignore", {"action": "store_true", "default": None, "help": "average the loss over labelled pixels"}),
    ("ohem_min_kept", {"type": int, "metavar": "N", "help": "OHEM: keep at least N hardest pixels per image"}),
    ("ohem_thresh", {"type": float, "help": "OHEM probability threshold (with --ohem-min-kept)"}),
    ("amp", {"choices": ["bf16", "fp16"], "help": "mixed precision"}),
    ("channels_last", {"action": "store_true", "default": None, "help": "NHWC memory format"}),
    ("accum_steps", {"type": int, "help": "gradient accumulation steps (default 1)"}),
    ("val_interval", {"type": int, "help": "iterations between validations (default iters/10)"}),
    ("checkpoint_interval", {"type": int, "help": "iterations between checkpoints (default: val interval)"}),
    ("keep_checkpoints", {"type": int, "help": "checkpoints to keep, <= 0 for all (default 2)"}),
    ("log_interval", {"type": int, "help": "iterations between log records (default 50)"}),
    ("num_workers", {"type": int, "help": "data-loading workers per process (default 2)"}),
    ("seed", {"type": int, "help": "seed of sample order, augmentation and dropout (default 0)"}),
]


def _weights_argument(model: str, pretrained: str | None, default: bool) -> bool | str | None:
    """`create_model`'s ``pretrained`` for ``--model``/``--pretrained``: a saved folder or Hub id loads its own
    weights, ARCH.TAG loads the tag's, a bare architecture gets `default`."""
    if pretrained:
        return pretrained
    if Path(model).is_dir() or model.startswith("hf-hub:"):
        return None
    return True if "." in model else default


def _is_main_process() -> bool:
    """False in the processes of a torchrun launch other than rank 0 (they stay quiet)."""
    return os.environ.get("RANK", "0") == "0"


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder: images/SPLIT, masks/SPLIT, classes.json")
    p.add_argument(
        "--reduce-zero-label", action=argparse.BooleanOptionalAction, default=None,
        help="label 0 means 'unlabelled' (mmseg's reduce_zero_label); evaluate defaults to the model's setting",
    )  # fmt: skip
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune on a dataset folder (runs under torchrun for multi-GPU)",
        description="Fine-tune with mmseg's recipe. Multi-GPU: torchrun --nproc_per_node N -m deeplabv3p train ...",
    )  # fmt: skip
    _add_dataset_args(p)
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
    p.add_argument("--no-sync-bn", action="store_true", help="keep per-GPU BatchNorm under torchrun")
    p.add_argument("--no-photometric", action="store_true", help="no photometric distortion")
    for name, kwargs in _TRAIN_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)


def _run_train(args: argparse.Namespace) -> int:
    from .pretrained.factory import create_model
    from .train.datasets import SegmentationDataset
    from .train.trainer import fit

    data_kwargs = {"reduce_zero_label": bool(args.reduce_zero_label)}
    train_set = SegmentationDataset(args.data, args.train_split, **data_kwargs)
    val_set = None
    if args.val_split.lower() != "none":
        if (Path(args.data) / "images" / args.val_split).is_dir():
            val_set = SegmentationDataset(args.data, args.val_split, **data_kwargs)
        elif _is_main_process():
            print(f"deeplabv3p train: no {args.val_split!r} split in {args.data}; training without validation")
    model_kwargs = {"num_classes": train_set.num_classes, **parse_model_kwargs(args.model_kwargs)}
    pretrained = _weights_argument(args.model, args.pretrained, default=False)
    model = create_model(args.model, pretrained, encoder_pretrained=args.encoder_pretrained, **model_kwargs)
    overrides = {name: getattr(args, name) for name, _ in _TRAIN_OPTIONS if getattr(args, name) is not None}
    if args.no_sync_bn:
        overrides["sync_bn"] = False
    if args.no_photometric:
        overrides["photometric"] = False
    result = fit(
        model, train_set, val_set, out=args.out, resume=args.resume, device=args.device,
        progress=not args.no_progress, **overrides,
    )  # fmt: skip
    if result.best_path is not None and _is_main_process():
        print(f"best mIoU {result.best_metrics['mIoU']:.2f} at iteration {result.best_iteration}: {result.best_path}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="mIoU/mAcc/aAcc of a model on a dataset split, as mmseg computes them",
        description="Runs every image through predict() and compares with the masks at their original size. "
        "Under torchrun the images are shared out over the processes.",
    )  # fmt: skip
    _add_dataset_args(p)
    p.add_argument("--model", required=True, help="ARCH.TAG, an architecture with --pretrained, or a model folder")
    p.add_argument("--pretrained", help="weights: a tag, a dataset name or a file")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--mode", choices=["whole", "slide"], help="inference mode (default: the model's)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    p.add_argument("--json", metavar="PATH", help="also write the metrics to this JSON file")


def _run_evaluate(args: argparse.Namespace) -> int:
    from . import distributed
    from .atomic import atomic_write_text
    from .pretrained.factory import create_model
    from .train.checkpoint import json_safe
    from .train.datasets import SegmentationDataset
    from .train.metrics import format_table
    from .train.trainer import evaluate

    model = create_model(args.model, _weights_argument(args.model, args.pretrained, default=True))
    cfg = model.pretrained_cfg
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


def _add_demo(sub: argparse._SubParsersAction) -> None:
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


def _run_demo(args: argparse.Namespace) -> int:
    from .train.demo import run_demo
    from .train.metrics import format_table

    result = run_demo(args.out, iters=args.iters, seed=args.seed, device=args.device, progress=not args.no_progress)
    print("\ndemo result: the trained model on the held-out images")
    print(format_table(result.metrics))
    print(f"model: {result.model_path}\noverlays: {result.overlays[0].parent}\ntime: {result.seconds:.0f} s")
    return 0


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


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from .pretrained.config import TEST_MODES

    p = sub.add_parser(
        "predict",
        help="segment images and write label maps (and overlays)",
        description="Segment images with the test-time settings of the weights and write, for each input "
        "NAME.EXT, OUT/NAME.png (class indices as a palette PNG) and with --overlay OUT/NAME_overlay.jpg.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIR", help="image files and/or directories of images")
    p.add_argument(
        "--model",
        required=True,
        help="a folder written by save_pretrained, hf-hub:ORG/NAME, ARCH.TAG or an architecture with --pretrained",
    )
    p.add_argument(
        "--pretrained",
        nargs="?",
        const=True,
        default=None,
        help="weights: a tag, a dataset (cityscapes, ade20k, ...) or a checkpoint file; "
        "without a value, the tag in --model or the architecture's Cityscapes weights",
    )
    p.add_argument("--checkpoint", help="local checkpoint file to load, keeping the tag's metadata")
    p.add_argument(
        "--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="create_model overrides, e.g. num_classes=5"
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--overlay", action="store_true", help="also write the labels blended over each image")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the labels (default 0.5)")
    p.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    p.add_argument("--mode", choices=TEST_MODES, help="whole or slide inference (default: the weights')")
    p.add_argument("--no-resize", action="store_true", help="feed images at their own size, not the test scale")
    p.add_argument("--test-scale", type=int, nargs=2, metavar=("A", "B"), help="mmcv rescale target (long, short)")
    p.add_argument("--crop-size", type=int, nargs="+", metavar="N", help="slide window H [W] (default: the weights')")
    p.add_argument("--stride", type=int, nargs="+", metavar="N", help="slide stride H [W] (default: 2/3 of the window)")
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--channels-last", action="store_true", help="run in channels-last memory format")
    p.add_argument("--window-batch-size", type=int, default=4, help="slide windows per forward pass (default 4)")


def _window(option: str, values: list[int] | None) -> tuple[int, int] | None:
    if values is None:
        return None
    if len(values) > 2:
        raise ValueError(f"{option} takes H or H W, got {values}")
    return (values[0], values[-1])


def _output_paths(items: list, out: Path, overlay: bool) -> list[tuple[Path, Path | None]]:
    """Label (and overlay) file of each input: named after it, never an input file, never shared."""
    inputs = {item.path.resolve() for item in items}
    owners: dict[Path, Path] = {}
    paths = []
    for item in items:
        stem = item.path.stem
        label = out / f"{stem}.png"
        over = out / f"{stem}_overlay.jpg" if overlay else None
        for target in (label, over):
            if target is None:
                continue
            resolved = target.resolve()
            if resolved in inputs:
                raise ValueError(f"output {str(target)!r} would overwrite an input image: choose another --out")
            if resolved in owners:
                raise ValueError(
                    f"inputs {str(owners[resolved])!r} and {str(item.path)!r} would both be written to "
                    f"{str(target)!r}: run them with different --out folders"
                )
            owners[resolved] = item.path
        paths.append((label, over))
    return paths


def _run_predict(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .inference.images import expand_inputs
    from .inference.pipeline import predict_iter

    items, _ = expand_inputs(args.inputs, name="IMAGES_OR_DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    paths = _output_paths(items, out, args.overlay)
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    if Path(args.model).is_dir() or is_hub_id(args.model):
        pretrained = args.pretrained  # a saved model brings its own weights
    else:
        pretrained = args.pretrained if args.pretrained is not None else split_model_name(args.model)[1] is not None
        if pretrained is False and args.checkpoint is None:
            raise ValueError(
                "predict needs trained weights: pass a saved model folder, ARCH.TAG, --pretrained [TAG|FILE] "
                "or --checkpoint FILE"
            )
    from .distributed import resolve_device

    device = resolve_device(args.device)
    model = create_model(
        args.model, pretrained=pretrained, checkpoint_path=args.checkpoint, **parse_model_kwargs(args.model_kwargs)
    ).to(device)
    results = predict_iter(
        model,
        [item.path for item in items],
        mode=args.mode,
        tta=args.tta,
        resize=not args.no_resize,
        test_scale=tuple(args.test_scale) if args.test_scale else None,
        crop_size=_window("--crop-size", args.crop_size),
        stride=_window("--stride", args.stride),
        dtype=getattr(torch, args.dtype),
        channels_last=args.channels_last,
        window_batch_size=args.window_batch_size,
    )
    out.mkdir(parents=True, exist_ok=True)
    for result, (label_path, overlay_path) in zip(tqdm(results, total=len(items), unit="img"), paths):
        result.save(label_path)
        if overlay_path is not None:
            result.save(overlay_path, kind="overlay", alpha=args.alpha)
    kinds = "label maps and overlays" if args.overlay else "label maps"
    print(f"wrote {kinds} of {len(items)} image(s) to {out}")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
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
    return values  # type: ignore[return-value]


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (dynamic batch, height and width)")
    p.add_argument("model", help="architecture or ARCH.TAG, e.g. deeplabv3plus_r50_d8")
    p.add_argument("--pretrained", default=None, help="weights: a tag, a dataset alias (cityscapes) or a local file")
    p.add_argument("--checkpoint", default=None, help="local checkpoint file (.safetensors or mmseg .pth)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default: onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: deeplabv3p.export.DEFAULT_OPSET)")
    p.add_argument("--size", type=_parse_size, default=(512, 512), help="HxW of the example (or fixed) input")
    p.add_argument("--static", action="store_true", help="fix batch, height and width to the example input")
    p.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime check against PyTorch at two input sizes"
    )


def _run_export(args: argparse.Namespace) -> int:
    pretrained = args.pretrained if args.pretrained is not None else False
    model = create_model(args.model, pretrained=pretrained, checkpoint_path=args.checkpoint).eval()
    out = export_onnx(
        model,
        args.out,
        opset=args.opset if args.opset is not None else DEFAULT_OPSET,
        dynamic=not args.static,
        input_size=args.size,
    )
    print(f"wrote {out} (opset {args.opset or DEFAULT_OPSET}, {'static' if args.static else 'dynamic'} shape)")
    if not args.no_check:
        h, w = args.size
        m = model.min_input_size
        sizes = [(h, w)] if args.static else [(h, w), (max(m, h // 2 + 7), max(m, w // 2 + 5))]
        for r in check_onnx(out, model, sizes=sizes):
            print(
                f"onnxruntime vs PyTorch at {r.size[0]}x{r.size[1]}: max abs diff {r.max_abs_diff:.2e} "
                f"(relative {r.rel_diff:.2e}), argmax agreement {100 * r.argmax_agreement:.3f}%"
            )
    return 0


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "list": (_add_list, _run_list),
    "convert": (_add_convert, _run_convert),
    "predict": (_add_predict, _run_predict),
    "train": (_add_train, _run_train),
    "evaluate": (_add_evaluate, _run_evaluate),
    "demo": (_add_demo, _run_demo),
    "export": (_add_export, _run_export),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeplabv3p", description="DeepLabV3+ semantic segmentation")
    parser.add_argument("--version", action="version", version=f"deeplabv3p {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, TypeError, OSError, ImportError, WeightsUnavailableError) as e:
        print(f"deeplabv3p {args.command}: error: {e}", file=sys.stderr)
        return 2
