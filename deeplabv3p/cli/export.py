"""``deeplabv3p export``: ONNX files checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse

from ..inference.export import DEFAULT_OPSET, check_onnx, export_onnx
from .common import model_from_args, parse_size


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (dynamic batch, height and width)")
    p.add_argument(
        "model",
        help="a saved model folder, hf-hub:ORG/NAME, ARCH.TAG, or an architecture (untrained without --pretrained)",
    )
    p.add_argument("--pretrained", default=None, help="weights: a tag, a dataset alias (cityscapes) or a local file")
    p.add_argument("--checkpoint", default=None, help="local checkpoint file (.safetensors or mmseg .pth)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default: onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: deeplabv3p.export.DEFAULT_OPSET)")
    p.add_argument("--size", type=parse_size, default=(512, 512), help="HxW of the example (or fixed) input")
    p.add_argument("--static", action="store_true", help="fix batch, height and width to the example input")
    p.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime check against PyTorch at two input sizes"
    )


def run_export(args: argparse.Namespace) -> int:
    model = model_from_args(args.model, args.pretrained, args.checkpoint).eval()
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
