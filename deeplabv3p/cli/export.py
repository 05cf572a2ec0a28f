"""``deeplabv3p export``: a model written in a deployment format, proven against PyTorch before it is published,
and optionally quantized to INT8."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..deploy.bounds import INT8
from ..deploy.formats import FORMATS
from ..deploy.opset import DEFAULT_OPSET
from ..fields import check_float
from .flags import parse_size

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus

INT8_FORMATS = tuple(f.name for f in FORMATS.values() if f.quantizer is not None)
MAX_SIZE_FORMATS = tuple(f.name for f in FORMATS.values() if f.max_size)
INT8_LABELS = INT8.labels  # the documented INT8 bound (deeplabv3p.deploy.bounds: torch-free)
DEFAULT_MAX_DROP = 0.005  # NNCF accuracy control: INT8 labels within half a percent of the fp32 file's


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
    p.add_argument(
        "--max-size", type=parse_size, default=None, metavar="HxW",
        help="executorch, tensorrt: the largest input the dynamic file takes (default: executorch the --size, "
        "tensorrt twice the --size)",
    )  # fmt: skip
    p.add_argument("--fp16", action="store_true", help="tensorrt: let the engine use half-precision kernels")
    p.add_argument(
        "--check-images", metavar="DIR", help="prove the export on these images (default: fixed synthetic inputs)"
    )
    p.add_argument(
        "--no-check", action="store_true", help="publish without running the file against PyTorch (not advised)"
    )
    q = p.add_argument_group(f"INT8 (static post-training quantization, for CPU deployment: {', '.join(INT8_FORMATS)})")
    q.add_argument("--int8", action="store_true", help="also write OUT_STEM.int8.EXT, calibrated on --calibration")
    q.add_argument(
        "--calibration", metavar="DIR", help="images to calibrate activation ranges on (predict's preprocessing)"
    )
    q.add_argument(
        "--calibration-images", type=int, default=32, metavar="N", help="calibrate on the first N (default 32)"
    )
    q.add_argument(
        "--calibration-method", choices=["minmax", "percentile", "entropy"], default=None,
        help="activation range from the calibration statistics (onnx; default percentile: 99.999%% of the range)",
    )  # fmt: skip
    q.add_argument(
        "--max-drop", type=float, default=None, metavar="FRACTION",
        help="openvino: when --calibration has more than N images, the next N are held out and NNCF's accuracy "
        "control returns layers to full precision until label agreement with PyTorch fp32 is within FRACTION of "
        f"the fp32 file's (default {DEFAULT_MAX_DROP}; giving it without such images is an error)",
    )  # fmt: skip
    q.add_argument(
        "--int8-min-agreement", type=float, default=INT8_LABELS, metavar="FRACTION",
        help="the least share of INT8 labels equal to PyTorch fp32's on the checked images; below it the INT8 file "
        f"is removed and the command fails (default {INT8_LABELS}, the documented INT8 bound)",
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
    if args.max_size is not None and (fmt.name not in MAX_SIZE_FORMATS or args.static):
        given = f"--format {fmt.name}" + (" with --static" if args.static else "")
        raise ValueError(
            f"--max-size applies to dynamic exports of --format {' or '.join(MAX_SIZE_FORMATS)} (given: {given})"
        )
    if args.int8 != (args.calibration is not None):
        raise ValueError("--int8 needs --calibration DIR (and --calibration DIR applies to --int8)")
    if args.int8 and fmt.name not in INT8_FORMATS:
        raise ValueError(f"--int8 is available for --format {', '.join(INT8_FORMATS)}, not {fmt.name}")
    if args.int8 and args.calibration_images < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {args.calibration_images}")
    for flag, value, applies in (
        ("--calibration-method", args.calibration_method, "onnx"),
        ("--max-drop", args.max_drop, "openvino"),
    ):
        if value is not None and (fmt.name != applies or not args.int8):
            given = f"--format {fmt.name}" + ("" if args.int8 else " without --int8")
            raise ValueError(f"{flag} applies to --int8 with --format {applies} (given: {given})")
    if args.max_drop is not None:
        check_float("--max-drop", args.max_drop, 0.0, 1.0, max_open=True)
    check_float("--int8-min-agreement", args.int8_min_agreement, 0.0, 1.0)
    calibration = expand_inputs(args.calibration, name="--calibration")[0] if args.int8 else []  # before any work
    if args.max_drop is not None and len(calibration) <= args.calibration_images:
        raise ValueError(
            f"--max-drop needs held-out images: --calibration {args.calibration!r} has {len(calibration)} image(s), "
            f"all used for calibration (--calibration-images {args.calibration_images}); add images or lower "
            "--calibration-images"
        )
    check_images = None
    if args.check_images is not None:
        check_images = [i.path for i in expand_inputs(args.check_images, name="--check-images")[0] if i.path]
    fmt.require_export()

    model = model_from_args(args.model, args.pretrained, args.checkpoint).eval()
    options: dict[str, Any] = {"opset": args.opset or DEFAULT_OPSET} if fmt.name == "onnx" else {}
    if args.fp16:
        options["fp16"] = True
    if args.max_size is not None:
        options["max_size"] = args.max_size
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
    """The format's one INT8 step (`Format.quantizer`) on the first N calibration images, then the agreement of
    the INT8 file's labels with PyTorch fp32 on the next N (held out), or on the calibration images if none."""
    from ..deploy.calibration import calibration_inputs, label_agreement
    from ..deploy.formats import get_format
    from ..deploy.loader import load

    fmt = get_format(args.format)
    n = args.calibration_images
    target = fmt.int8_path(fp32)
    held_out = paths[n : 2 * n]
    options, how = _int8_options(args, model, held_out)
    fmt.quantize_function()(fp32, target, calibration_inputs(model, paths, limit=n), **options)
    checked = held_out or paths[:n]
    agreement = label_agreement(model, load(target), checked)
    which = f"{len(held_out)} held-out" if held_out else f"the {len(checked)} calibration"
    report = f"INT8 labels vs PyTorch fp32 on {which} image(s): {100 * agreement:.2f}% of pixels agree"
    if agreement < args.int8_min_agreement:
        target.unlink(missing_ok=True)
        from ..deploy.proof import ExportCheckError

        raise ExportCheckError(
            f"{report}, below --int8-min-agreement {args.int8_min_agreement}: {target} was removed (the fp32 file "
            f"{fp32} stands). Calibrate on more images (--calibration-images), "
            + ("lower --max-drop, " if fmt.name == "openvino" else "try --format openvino (NNCF accuracy control), ")
            + "or accept the drop with a lower --int8-min-agreement"
        )
    print(f"wrote {target} (INT8, calibrated on {min(n, len(paths))} image(s), {how})")
    print(report)


def _int8_options(args: argparse.Namespace, model: DeepLabV3Plus, held_out: list[Path]) -> tuple[dict[str, Any], str]:
    """The quantizer's options from the INT8 flags of ``--format``, and how the report describes them."""
    if args.format == "onnx":
        from ..deploy.onnx_int8 import DEFAULT_METHOD

        method = args.calibration_method or DEFAULT_METHOD
        return {"method": method}, method
    if not held_out:  # openvino without held-out images: plain NNCF post-training quantization
        return {}, "NNCF, no accuracy control: no held-out images"
    from ..deploy.calibration import calibration_inputs
    from ..deploy.openvino_int8 import torch_reference

    drop = DEFAULT_MAX_DROP if args.max_drop is None else args.max_drop
    options = {
        "held_out": list(calibration_inputs(model, held_out, limit=len(held_out))),
        "reference": torch_reference(model),
        "max_drop": drop,
    }
    return options, f"NNCF with accuracy control on {len(held_out)} held-out image(s), max drop {100 * drop:.2g}%"
