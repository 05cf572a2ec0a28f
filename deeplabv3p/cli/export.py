"""``deeplabv3p export``: ONNX files checked against PyTorch with onnxruntime, and their INT8 quantization."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..inference.opset import DEFAULT_OPSET
from .flags import parse_size

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus


def add_export(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "export",
        help=help,
        description="Export a model to ONNX with dynamic batch, height and width (or fixed ones with --static), "
        "check the file against PyTorch with onnxruntime at two input sizes, and optionally quantize it to INT8.",
    )
    p.add_argument(
        "model",
        help="a saved model folder, hf-hub:ORG/NAME, ARCH.TAG, or an architecture (untrained without --pretrained)",
    )
    p.add_argument("--pretrained", default=None, help="weights: a tag, a dataset alias (cityscapes) or a local file")
    p.add_argument("--checkpoint", default=None, help="local checkpoint file (.safetensors or mmseg .pth)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default: onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument(
        "--size", type=parse_size, default=(512, 512), help="HxW of the example (or fixed) input (default: 512x512)"
    )
    p.add_argument("--static", action="store_true", help="fix batch, height and width to the example input")
    p.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime check against PyTorch at two input sizes"
    )
    q = p.add_argument_group("INT8 (static quantization with onnxruntime, for CPU deployment)")
    q.add_argument("--int8", action="store_true", help="also write OUT_STEM.int8.onnx, calibrated on --calibration")
    q.add_argument(
        "--calibration", metavar="DIR", help="images to calibrate activation ranges on (predict's preprocessing)"
    )
    q.add_argument(
        "--calibration-images", type=int, default=32, metavar="N", help="calibrate on the first N (default 32)"
    )
    q.add_argument(
        "--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax",
        help="activation range from the calibration statistics (default minmax)",
    )  # fmt: skip


def run_export(args: argparse.Namespace) -> int:
    if args.int8 != (args.calibration is not None):
        raise ValueError("--int8 needs --calibration DIR (and --calibration DIR applies to --int8)")
    if args.int8 and args.calibration_images < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {args.calibration_images}")
    from ..inference.export import check_onnx, export_onnx
    from .common import model_from_args

    model = model_from_args(args.model, args.pretrained, args.checkpoint).eval()
    out = export_onnx(
        model,
        args.out,
        opset=args.opset,
        dynamic=not args.static,
        input_size=args.size,
    )
    print(f"wrote {out} (opset {args.opset}, {'static' if args.static else 'dynamic'} shape)")
    if not args.no_check:
        h, w = args.size
        m = model.min_input_size
        sizes = [(h, w)] if args.static else [(h, w), (max(m, h // 2 + 7), max(m, w // 2 + 5))]
        for r in check_onnx(out, model, sizes=sizes):
            print(
                f"onnxruntime vs PyTorch at {r.size[0]}x{r.size[1]} (HxW): max abs diff {r.max_abs_diff:.2e} "
                f"(relative {r.rel_diff:.2e}), argmax agreement {100 * r.argmax_agreement:.3f}%"
            )
    if args.int8:
        _int8(args, model, out)
    return 0


def _int8(args: argparse.Namespace, model: DeepLabV3Plus, fp32: Path) -> None:
    from ..inference.images import ImageSpec, expand_inputs
    from ..inference.onnx_runtime import OnnxSegmenter
    from ..inference.quantize import calibration_inputs, label_agreement, quantize_onnx

    items, _ = expand_inputs(args.calibration, ImageSpec(model.config.in_chans), name="--calibration")
    paths = [item.path for item in items]
    n = args.calibration_images
    target = fp32.with_name(fp32.name.removesuffix(".onnx") + ".int8.onnx")
    quantize_onnx(fp32, target, calibration_inputs(model, paths, limit=n), method=args.calibration_method)
    held_out = paths[n : 2 * n]
    checked = held_out or paths[:n]
    agreement = label_agreement(model, OnnxSegmenter(target), checked)
    which = f"{len(held_out)} held-out" if held_out else f"the {len(checked)} calibration"
    print(f"wrote {target} (INT8, calibrated on {min(n, len(paths))} image(s), {args.calibration_method})")
    print(f"INT8 labels vs PyTorch fp32 on {which} image(s): {100 * agreement:.2f}% of pixels agree")
