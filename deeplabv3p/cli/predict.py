"""``deeplabv3p predict``: label maps (and overlays) of images or folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..inference.options import PredictOptions
from ..pretrained.factory import create_model
from ..pretrained.hub import is_hub_id
from ..pretrained.registry import split_model_name
from .common import add_options, option_values, parse_model_kwargs


def add_predict(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    add_options(p.add_argument_group("predict options (deeplabv3p.PredictOptions)"), PredictOptions)


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
    if Path(args.model).is_dir() or is_hub_id(args.model):
        pretrained = args.pretrained  # a saved model brings its own weights
    else:
        pretrained = args.pretrained if args.pretrained is not None else split_model_name(args.model)[1] is not None
        if pretrained is False and args.checkpoint is None:
            raise ValueError(
                "predict needs trained weights: pass a saved model folder, ARCH.TAG, --pretrained [TAG|FILE] "
                "or --checkpoint FILE"
            )
    from ..distributed import resolve_device

    options = PredictOptions(**option_values(args, PredictOptions))
    device = resolve_device(args.device)
    model = create_model(
        args.model, pretrained=pretrained, checkpoint_path=args.checkpoint, **parse_model_kwargs(args.model_kwargs)
    ).to(device)
    results = predict_iter(model, [item.path for item in items], options)
    out.mkdir(parents=True, exist_ok=True)
    for result, (label_path, overlay_path) in zip(tqdm(results, total=len(items), unit="img"), paths):
        result.save(label_path)
        if overlay_path is not None:
            result.save(overlay_path, kind="overlay", alpha=args.alpha)
    kinds = "label maps and overlays" if args.overlay else "label maps"
    print(f"wrote {kinds} of {len(items)} image(s) to {out}")
    return 0
