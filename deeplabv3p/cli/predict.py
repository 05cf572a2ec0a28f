"""``deeplabv3p predict``: label maps (and overlays) of images or folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import model_from_args, parse_model_kwargs


def add_predict(sub: argparse._SubParsersAction) -> None:
    from ..pretrained.config import TEST_MODES

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


def run_predict(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..inference.images import expand_inputs
    from ..inference.pipeline import predict_iter

    items, _ = expand_inputs(args.inputs, name="IMAGES_OR_DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    paths = _output_paths(items, out, args.overlay)
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    from ..distributed import resolve_device

    device = resolve_device(args.device)
    model = model_from_args(
        args.model, args.pretrained, args.checkpoint, require_weights=True, **parse_model_kwargs(args.model_kwargs)
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
