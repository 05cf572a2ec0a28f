"""``deeplabv3p predict``: label maps (and overlays) of images or folders, or georeferenced label rasters of large
rasters, sharded under torchrun, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..deploy.backend_names import AUTO, EAGER, PYTORCH_BACKENDS, backend_names
from ..fields import path_kind
from ..inference.options import PredictOptions
from .flags import add_options, exported_file, option_values, parse_bands, parse_model_kwargs, parse_size

if TYPE_CHECKING:
    from ..deploy.backend import DeployedBackend
    from ..deploy.selection import Segmenter
    from ..inference.images import ImageItem
    from ..inference.model import DeepLabV3Plus
    from ..inference.raster_predict import RasterOptions

EPILOG = """\
Under torchrun every process takes its own device (cuda:LOCAL_RANK, or the CPU) and every world-th input, and
writes only those; rank 0 merges the manifest at the end. Outputs that exist are skipped, so rerunning the same
command after a crash or preemption finishes the job. Several nodes: the usual torchrun rendezvous flags, with
OUT on a filesystem every node sees, e.g.
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id job1 \\
      -m deeplabv3p predict photos/ --model deeplabv3plus_r50_d8.cityscapes --out masks/

Large rasters (GeoTIFF, COG, JP2, VRT; the [geo] extra): --out NAME.tif writes the label raster of one input raster,
--geotiff writes OUT/NAME.tif for every input; streamed in slide windows (--window / --stride), resumable, e.g.
  deeplabv3p predict ortho.tif --model deeplabv3plus_r50_d8.potsdam --out labels.tif --bands 1,2,3 --probs confidence
"""
RASTER_FLAGS = ("nodata", "probs", "cog")


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
    p.add_argument(
        "--out", required=True, help="output folder (created if missing), or NAME.tif: the label raster of one raster"
    )
    p.add_argument("--overlay", action="store_true", help="also write the labels blended over each image")
    p.add_argument(
        "--bands",
        dest="read_bands",  # PredictOptions.bands, read as B,B,B (the train and evaluate commands' form)
        type=parse_bands,
        metavar="B,B,B",
        help="bands of TIFF inputs and rasters to read, 1-based as GDAL counts: 4,3,2 (default: the bands the weights "
        "were trained on, else all)",
    )
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
    _add_raster_flags(p.add_argument_group("label rasters (GeoTIFF; pip install 'deeplabv3p[geo]')"))


def _add_raster_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--geotiff", action="store_true", help="write OUT/NAME.tif, a georeferenced label raster, for every input"
    )
    g.add_argument("--nodata", type=float, metavar="VALUE", help="the input's nodata value (default: the raster's)")
    g.add_argument(
        "--probs",
        choices=("confidence", "classes"),
        help="also write NAME_probs.tif: the winning class's probability, or one band per class (uint8, x255)",
    )
    g.add_argument("--cog", action="store_true", help="write Cloud Optimized GeoTIFFs")


def _raster_options(args: argparse.Namespace) -> RasterOptions | None:
    """The `RasterOptions` of a raster run (``--geotiff`` or ``--out NAME.tif``), else None; raster flags without
    one are an error."""
    from ..inference.raster_predict import RasterOptions
    from ..inference.rasters import is_raster_path

    single = is_raster_path(args.out) and not Path(args.out).is_dir()
    if not (args.geotiff or single):
        given = [f"--{name}" for name in RASTER_FLAGS if getattr(args, name) not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} apply to label rasters: add --geotiff, or pass --out NAME.tif")
        return None
    if args.overlay:
        raise ValueError("--overlay draws PNG label maps; label rasters (--geotiff, --out NAME.tif) have no overlay")
    return RasterOptions(nodata=args.nodata, probs=args.probs, cog=args.cog)  # bands: PredictOptions.bands


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
    options = PredictOptions(**option_values(args, PredictOptions), bands=args.read_bands)
    raster = _raster_options(args)
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
    single = raster is not None and not args.geotiff
    if single:
        if len(items) != 1:
            raise ValueError(
                f"--out {str(out)!r} is one label raster but {len(items)} inputs were given: pass one raster, or "
                "--geotiff with an output folder"
            )
    elif (kind := path_kind(out)) not in ("nothing", "a folder"):
        raise ValueError(f"--out {str(out)!r} is {kind}, not a folder")
    else:
        output_paths(items, out, args.overlay, ".png" if raster is None else ".tif")  # clashes fail before loading
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
        if single:
            assert raster is not None and items[0].path is not None
            if ctx.is_main:  # one raster: one process predicts it
                _predict_one_raster(model, items[0].path, out, options, raster, args)
            return 0
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
            raster=raster,
        )
    finally:
        distributed.teardown(ctx)
    kinds = "label rasters" if raster is not None else "label maps and overlays" if args.overlay else "label maps"
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


def _predict_one_raster(
    model: DeepLabV3Plus | DeployedBackend | Segmenter,
    source: Path,
    out: Path,
    options: PredictOptions,
    raster: RasterOptions,
    args: argparse.Namespace,
) -> None:
    from ..inference.raster_predict import predict_raster

    summary = predict_raster(
        model,
        source,
        out,
        options.replace(device=None),
        raster,
        resume=not args.overwrite,
        progress=not args.no_progress,
    )
    height, width = summary.size
    if not summary.written:
        print(f"{out} is already there ({height}x{width}); --overwrite predicts it again")
        return
    crs = "with the input's CRS" if summary.georeferenced else "without a CRS (the input has none)"
    resumed = f", resumed at row {summary.resumed_rows}" if summary.resumed_rows else ""
    print(f"wrote {', '.join(map(str, summary.written))}: {height}x{width} (HxW), {crs}{resumed}")


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
    from ..inference.pipeline import input_spec, resolve_settings
    from ..inference.resize import scaled_test_size

    settings = resolve_settings(model, options)
    if settings.test.mode == "slide" and settings.test.window is not None:
        return settings.test.window
    height, width = read_image(first.path, input_spec(model, options)).shape[-2:]
    size = scaled_test_size(height, width, settings.test.scale, settings.test.keep_ratio)
    if settings.slides_over_budget(*size) and settings.budget_slide is not None:
        return settings.budget_slide[0]
    return size
