"""``deeplabv3p predict``: label maps (and overlays) of images or folders, sharded under torchrun, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..fields import path_kind
from ..inference.options import PredictOptions
from .flags import add_options, exported_file, option_values, parse_model_kwargs

if TYPE_CHECKING:
    from ..deploy.backend import DeployedBackend
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
    add_options(p.add_argument_group("predict options (deeplabv3p.PredictOptions)"), PredictOptions)


def run_predict(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..inference.images import expand_inputs
    from ..inference.writer import output_paths, write_predictions
    from .common import model_from_args

    exported = exported_file(args.model)
    if exported and (args.pretrained is not None or args.checkpoint or args.model_kwargs):
        raise ValueError(
            f"--model {args.model!r} is an exported file: --pretrained, --checkpoint and --model-kwargs apply to "
            "PyTorch models only"
        )
    options = PredictOptions(**option_values(args, PredictOptions))
    items, _ = expand_inputs(args.inputs, name="IMAGES_OR_DIR")
    out = Path(args.out)
    if (kind := path_kind(out)) not in ("nothing", "a folder"):
        raise ValueError(f"--out {str(out)!r} is {kind}, not a folder")
    output_paths(items, out, args.overlay)  # name clashes fail before any model is loaded
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    model: DeepLabV3Plus | DeployedBackend
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
    if summary.failures:  # reported as they happened; listed again here, and the exit status says so
        lines = "".join(f"\n  {reason}" for _, reason in summary.failures)
        print(f"deeplabv3p predict: {len(summary.failures)} input(s) could not be read and were skipped "
              f"(listed in the manifest; fix or remove them and run again):{lines}", file=sys.stderr)  # fmt: skip
        return 1
    return 0
