"""``deeplabv3p predict``: label maps (and overlays) of images or folders, sharded under torchrun, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..deploy.backend_names import AUTO, EAGER, PYTORCH_BACKENDS, backend_names
from ..inference.options import PredictOptions
from .common import model_from_args
from .flags import add_options, exported_file, option_values, parse_model_kwargs, parse_size

if TYPE_CHECKING:
    from ..deploy.backend import DeployedBackend
    from ..deploy.selection import Segmenter
    from ..inference.images import ImageItem
    from ..inference.model import DeepLabV3Plus

EPILOG = """\
Under torchrun every process takes its own device (cuda:LOCAL_RANK, or the CPU) and every world-th input, and
writes only those; rank 0 merges the manifest at the end. Outputs that exist are skipped, so rerunning the same
command after a crash or preemption finishes the job. Several nodes: the usual torchrun rendezvous flags, with
OUT on a filesystem every node sees, e.g.
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id job1 \\
      -m deeplabv3p predict photos/ --model deeplabv3plus_r50_d8.cityscapes --out masks/
"""


def add_predict(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "predict",
        help=help,
        description="Segment images with the test-time settings of the weights and write, for each input "
        "NAME.EXT, OUT/NAME.png (class indices as a palette PNG), with --overlay OUT/NAME_overlay.jpg, and "
        "OUT/manifest.jsonl (input, output, size, seconds per image).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIR", help="image files and/or directories of images")
    p.add_argument(
        "--model",
        required=True,
        help="a folder written by save_pretrained, hf-hub:ORG/NAME, ARCH.TAG, an architecture with --pretrained, "
        "or a file written by deeplabv3p export (model.onnx, model.xml, ...: run by its runtime)",
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
    p.add_argument("--overwrite", action="store_true", help="predict every input again, even where outputs exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--backend",
        choices=[AUTO, *backend_names()],
        default=None,
        help="run the PyTorch model with this backend: 'auto' times PyTorch and every installed runtime on this "
        "machine at the network's input size and uses the fastest that segments as PyTorch fp32 does (cached; see "
        "deeplabv3p benchmark-backends); a format name exports the model into the cache and runs it there "
        "(default: the PyTorch model as it is)",
    )
    p.add_argument(
        "--backend-size",
        type=parse_size,
        default=None,
        metavar="HxW",
        help="network input size --backend times and proves at (default: the slide window, or the first image "
        "after the test rescale)",
    )
    add_options(p.add_argument_group("predict options (deeplabv3p.PredictOptions)"), PredictOptions)


def run_predict(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..inference.images import expand_inputs
    from ..inference.writer import output_paths, write_predictions

    exported = exported_file(args.model)
    if exported and (args.pretrained is not None or args.checkpoint or args.model_kwargs):
        raise ValueError(
            f"--model {args.model!r} is an exported file: --pretrained, --checkpoint and --model-kwargs apply to "
            "PyTorch models only"
        )
    options = PredictOptions(**option_values(args, PredictOptions))
    if args.backend is not None and exported:
        raise ValueError(
            f"--backend applies to PyTorch models; --model {args.model!r} is an exported file, run by its runtime"
        )
    if args.backend_size is not None and args.backend is None:
        raise ValueError("--backend-size applies to --backend")
    if args.backend not in (None, *PYTORCH_BACKENDS) and (
        options.dtype not in (None, "auto", "float32") or options.channels_last
    ):
        raise ValueError(
            f"--backend {args.backend} may run an exported file, which keeps its own precision and layouts: drop "
            "--dtype / --channels-last, or use --backend pytorch-folded"
        )
    if args.backend not in (None, EAGER) and distributed.process_share()[1] > 1:
        raise ValueError(
            f"--backend {args.backend} times and proves backends in one process: run predict without torchrun (the "
            "chosen runtime uses every thread it is given)"
        )
    if args.backend is not None and options.device not in (None, "cpu"):
        raise ValueError(f"--backend chooses among CPU runtimes; it does not apply to --device {options.device}")
    items, _ = expand_inputs(args.inputs, name="IMAGES_OR_DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    output_paths(items, out, args.overlay)  # name clashes fail before any model is loaded
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    model: DeepLabV3Plus | DeployedBackend | Segmenter
    if exported:
        from ..deploy.loader import load

        model = load(args.model)
        model.configure(options)  # PyTorch-only options fail here, before any process group
        ctx = distributed.setup("cpu")
    else:
        ctx = distributed.setup(options.device)  # under torchrun: this process's device and the process group
    try:
        if not exported:
            kwargs = parse_model_kwargs(args.model_kwargs)
            model = model_from_args(args.model, args.pretrained, args.checkpoint, require_weights=True, **kwargs)
            model = model.to(ctx.device)
            if args.backend not in (None, EAGER):
                model = _backend(model, args.backend, args.backend_size, options, items[0], ctx.is_main)
        summary = write_predictions(
            model,
            [item.path for item in items],
            out,
            options.replace(device=None),  # the model is on this process's device already
            overlay=args.overlay,
            alpha=args.alpha,
            resume=not args.overwrite,
            shard=(ctx.rank, ctx.world_size),
            progress=ctx.is_main and not args.no_progress,
        )
    finally:
        distributed.teardown(ctx)
    kinds = "label maps and overlays" if args.overlay else "label maps"
    share = f" (process {ctx.rank} of {ctx.world_size}: {summary.share})" if ctx.distributed else ""
    skipped = f", {summary.skipped} already there" if summary.skipped else ""
    print(f"wrote {kinds} of {summary.written} image(s) to {out}{share}{skipped}")
    if summary.manifest is not None:
        print(f"manifest: {summary.manifest}")
    return 0


def _backend(
    model: DeepLabV3Plus, name: str, size: tuple[int, int] | None, options: PredictOptions, first: ImageItem, show: bool
) -> Segmenter:
    """`model` run by the backend `name` (``auto``: `deeplabv3p.deploy.fastest`, its table printed), proven at
    `size` (default: the network input of the first image, `_network_size`)."""
    from ..deploy.backend import DeployedBackend
    from ..deploy.selection import backend_for, fastest

    size = size or _network_size(model, options, first)
    if name == AUTO:
        segmenter, table = fastest(model, size)
        if show:
            print(table)
    else:
        segmenter = backend_for(model, name, size)
    if isinstance(segmenter, DeployedBackend):
        segmenter.configure(options)  # PyTorch-only options (--dtype, --channels-last) fail here
    return segmenter


def _network_size(model: DeepLabV3Plus, options: PredictOptions, first: ImageItem) -> tuple[int, int]:
    """The network input size predict uses for the first image: the slide window, else the image after the test
    rescale (or the budget's slide window when whole mode would slide over it)."""
    from ..inference.images import read_image
    from ..inference.pipeline import resolve_settings
    from ..inference.resize import scaled_test_size

    settings = resolve_settings(model, options)
    if settings.test.mode == "slide" and settings.test.window is not None:
        return settings.test.window
    height, width = read_image(first.path).shape[-2:]
    size = scaled_test_size(height, width, settings.test.scale, settings.test.keep_ratio)
    if settings.slides_over_budget(*size) and settings.budget_slide is not None:
        return settings.budget_slide[0]
    return size
