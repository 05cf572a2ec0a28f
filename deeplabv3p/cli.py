"""Command line: ``deeplabv3p <command>`` (also ``python -m deeplabv3p``).

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)`` does the work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .export import DEFAULT_OPSET, check_onnx, export_onnx
from .factory import create_model
from .registry import list_models, list_pretrained
from .version import __version__


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list architectures or pretrained weights")
    p.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. '*r101*' or '*ade20k*'")
    p.add_argument("--pretrained", action="store_true", help="list pretrained ARCH.TAG names instead")


def _run_list(args: argparse.Namespace) -> int:
    names = list_pretrained(args.pattern) if args.pretrained else list_models(args.pattern)
    print("\n".join(names))
    return 0 if names else 1


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
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"deeplabv3p {args.command}: error: {e}", file=sys.stderr)
        return 2
