"""``deeplabv3p export``: a model written in a deployment format, proven against PyTorch before it is published,
and optionally quantized to INT8."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..deploy.formats import FORMATS
from ..deploy.opset import DEFAULT_OPSET
from .flags import parse_size

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus

INT8_FORMATS = ("onnx",)


def add_export(sub: argparse._SubParsersAction, help: str) -> None:
    formats = "\n".join(f"  {f.name:<11}{f.suffix:<11}{f.summary} [pip extra: {f.extra}]" for f in FORMATS.values())
    p = sub.add_parser(
        "export",
        help=help,
        description="Export a model to a deployment format with dynamic batch, height and width (or fixed ones "
        "with --static), run the written file with its runtime on held-out inputs and compare it with PyTorch "
        "(labels and logits, at two sizes), and publish it only if it agrees within the documented bound.",
        epilog=f"formats (OUT must end as shown):\n{formats}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        help="a saved model folder, hf-hub:ORG/NAME, ARCH.TAG, or an architecture (untrained without --pretrained)",
    )
    p.add_argument("--pretrained", default=None, help="weights: a tag, a dataset alias (cityscapes) or a local file")
    p.add_argument("--checkpoint", default=None, help="local checkpoint file (.safetensors or mmseg .pth)")
    p.add_argument("--format", default="onnx", choices=list(FORMATS), help="deployment format (default: onnx)")
    p.add_argument("--out", required=True, help="output path, e.g. model.onnx (its ending must match --format)")
    p.add_argument("--opset", type=int, default=None, help=f"ONNX opset (onnx format; default: {DEFAULT_OPSET})")
    p.add_argument(
        "--size", type=parse_size, default=(512, 512), help="HxW of the example (or fixed) input (default: 512x512)"
    )
    p.add_argument("--static", action="store_true", help="fix batch, height and width to the example input")
    p.add_argument("--fp16", action="store_true", help="tensorrt: let the engine use half-precision kernels")
    p.add_argument(
        "--check-images", metavar="DIR", help="prove the export on these images (default: fixed synthetic inputs)"
    )
    p.add_argument(
        "--no-check", action="store_true", help="publish without running the file against PyTorch (not advised)"
    )
    q = p.add_argument_group("INT8 (static post-training quantization, for CPU deployment)")
    q.add_argument("--int8", action="store_true", help="also write OUT_STEM.int8.EXT, calibrated on --calibration")
    q.add_argument(
        "--calibration", metavar="DIR", help="images to calibrate activation ranges on (predict's preprocessing)"
    )
    q.add_argument(
        "--calibration-images", type=int, default=32, metavar="N", help="calibrate on the first N (default 32)"
    )
    q.add_argument(
        "--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax",
        help="activation range from the calibration statistics (onnx; default minmax)",
    )  # fmt: skip


def run_export(args: argparse.Namespace) -> int:
    from ..deploy.exporter import check_target, export
    from ..deploy.formats import get_format
    from ..inference.images import expand_inputs
    from .common import model_from_args

    fmt = get_format(args.format)
    check_target(args.out, fmt)
    if args.opset is not None and fmt.name != "onnx":
        raise ValueError(f"--opset applies to --format onnx, not {fmt.name}")
    if args.fp16 and fmt.name != "tensorrt":
        raise ValueError(f"--fp16 applies to --format tensorrt, not {fmt.name}")
    if args.int8 != (args.calibration is not None):
        raise ValueError("--int8 needs --calibration DIR (and --calibration DIR applies to --int8)")
    if args.int8 and fmt.name not in INT8_FORMATS:
        raise ValueError(f"--int8 is available for --format {', '.join(INT8_FORMATS)}, not {fmt.name}")
    if args.int8 and args.calibration_images < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {args.calibration_images}")
    calibration = expand_inputs(args.calibration, name="--calibration")[0] if args.int8 else []  # before any work
    check_images = None
    if args.check_images is not None:
        check_images = [i.path for i in expand_inputs(args.check_images, name="--check-images")[0] if i.path]
    fmt.require_export()

    model = model_from_args(args.model, args.pretrained, args.checkpoint).eval()
    options: dict[str, Any] = {"opset": args.opset or DEFAULT_OPSET} if fmt.name == "onnx" else {}
    if args.fp16:
        options["fp16"] = True
    report = export(
        model,
        args.out,
        fmt.name,
        input_size=args.size,
        dynamic=not args.static,
        check=not args.no_check,
        check_images=check_images,
        **options,
    )
    for line in report.lines():
        print(line)
    if args.int8:
        _int8(args, model, report.path, [item.path for item in calibration if item.path is not None])
    return 0


def _int8(args: argparse.Namespace, model: DeepLabV3Plus, fp32: Path, paths: list[Path]) -> None:
    from ..deploy.calibration import calibration_inputs, label_agreement
    from ..deploy.onnx_int8 import quantize_onnx
    from ..deploy.onnx_runtime import OnnxSegmenter

    n = args.calibration_images
    target = fp32.with_name(fp32.name.removesuffix(".onnx") + ".int8.onnx")
    quantize_onnx(fp32, target, calibration_inputs(model, paths, limit=n), method=args.calibration_method)
    held_out = paths[n : 2 * n]
    checked = held_out or paths[:n]
    agreement = label_agreement(model, OnnxSegmenter(target), checked)
    which = f"{len(held_out)} held-out" if held_out else f"the {len(checked)} calibration"
    print(f"wrote {target} (INT8, calibrated on {min(n, len(paths))} image(s), {args.calibration_method})")
    print(f"INT8 labels vs PyTorch fp32 on {which} image(s): {100 * agreement:.2f}% of pixels agree")
