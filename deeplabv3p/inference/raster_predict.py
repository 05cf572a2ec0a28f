"""Predicting a raster larger than memory: slide windows read from the file, logits blended as mmseg's slide
inference does (sum / count), finished strips stored as soon as no later window touches them, and a georeferenced
label raster written at the end (`deeplabv3p.inference.raster_writer`).

What is held at once (`deeplabv3p.inference.raster_blend`): one window-wide column band of logits of the current
row of windows, labels until they fill a tile row, and a few windows of input; the sums the next row of windows
shares with this one go to a temporary file beside the strips. Nothing of the raster's height, and nothing in float
of its width. Rasters are
predicted at their own resolution (no test rescale: a pixel is a ground distance) in slide mode with the weights'
window and stride (their training crop with a 2/3 stride where they test whole), or ``crop_size`` / ``stride``
(``--window`` / ``--stride``). Windows, their order, their batches (``window_batch_size``) and the blend are those
of `deeplabv3p.inference.pipeline.slide_inference`, so a raster that fits in memory gets the labels
``predict(pixels, mode="slide", resize=False)`` gives.

Nodata pixels (`deeplabv3p.inference.rasters`) enter the network as the mean (0 after normalisation, as mmseg pads)
and come out as the label raster's nodata value; a window that is all nodata is not run at all. A killed run
resumes at its first unfinished strip (`deeplabv3p.inference.strips`); the output appears only once complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..fields import check_bool, check_choice, check_float, check_int
from .bands import choose_bands
from .options import PredictOptions, make_options
from .pipeline import _start, normalize, slide_windows
from .prefetch import made_ahead, reads_ahead
from .raster_blend import RowBlend, Window
from .raster_writer import TILE, label_dtype, probs_path, write_label_raster, written_job
from .rasters import RasterSource, gdal_env, is_raster_path, open_raster
from .strips import StripStore, strips_folder

if TYPE_CHECKING:
    from ..models.config import ModelConfig
    from ..models.model import DeepLabV3PlusNetwork
    from ..pretrained.config import PretrainedCfg
    from .backend import Backend
    from .pipeline import _Run

logger = logging.getLogger("deeplabv3p")

ProbsKind = Literal["confidence", "classes"]
PROBS_KINDS: tuple[ProbsKind, ...] = ("confidence", "classes")


@dataclass(frozen=True)
class RasterOptions:
    """How a raster is read and its labels written (the network's options are `PredictOptions`).

    Which bands are read is ``PredictOptions.bands`` (``bands=(4, 3, 2)``, ``--bands 4,3,2``), as for TIFF files
    predicted in memory (`deeplabv3p.inference.bands`). ``nodata``: the input's nodata value, replacing the
    raster's own; ``probs``: also write ``NAME_probs.tif``, ``"confidence"``
    (the winning class's probability) or ``"classes"`` (one band per class), uint8-scaled; ``cog``: write Cloud
    Optimized GeoTIFFs; ``tile``: the side of the written tiles (a multiple of 16), also the rows a stored strip
    ends on, so each tile row is written once.
    """

    nodata: float | None = None
    probs: ProbsKind | None = None
    cog: bool = False
    tile: int = TILE

    def __post_init__(self) -> None:
        if self.nodata is not None and self.nodata == self.nodata:  # NaN is a valid nodata value
            check_float("nodata", self.nodata)
        if self.probs is not None:
            check_choice("probs", self.probs, PROBS_KINDS)
        check_bool("cog", self.cog)
        if check_int("tile", self.tile, 16) % 16:
            raise ValueError(f"tile must be a multiple of 16 (GeoTIFF tiles), got {self.tile}")


@dataclass(frozen=True)
class RasterSummary:
    """What `predict_raster` did: the files written (labels last; empty when the output was already there), the
    raster's size, the strips stored (of `strips`), the rows found done by an earlier run, and the seconds taken."""

    input: Path
    output: Path
    written: tuple[Path, ...]
    size: tuple[int, int]
    georeferenced: bool
    strips: int
    resumed_rows: int
    seconds: float


def raster_settings(options: PredictOptions) -> PredictOptions:
    """The predict options of a raster's windows: slide mode at the raster's own resolution, no TTA, no in-memory
    probs; no bands (the raster's reader has applied them: `open_for_model`)."""
    if options.tta:
        raise ValueError("tta=True does not apply to rasters: they are predicted window by window at one scale")
    if options.test_scale is not None:
        raise ValueError("test_scale does not apply to rasters: they are predicted at their own resolution")
    if options.mode == "whole":
        raise ValueError(
            "mode='whole' does not apply to rasters: they are predicted in slide windows (choose the window with "
            "crop_size / --window)"
        )
    return options.replace(mode="slide", resize=False, return_probs=False, batch_size=1, bands=None)


def _chunks(windows: list[Window], per_forward: int) -> list[list[Window]]:
    return [windows[i : i + per_forward] for i in range(0, len(windows), per_forward)]


class _Batch:
    """One chunk of windows read and normalized for the network (by the reading thread): `x` holds the windows
    that are not all nodata, `rows[i]` is window i's index in `x` (None: not run) and `valid` its mask."""

    def __init__(self, raster: RasterSource, chunk: list[Window], run: _Run, pin: bool) -> None:
        self.rows: list[int | None] = []
        self.valid: list[np.ndarray | None] = []
        crops: list[torch.Tensor] = []
        for window in chunk:
            read = raster.read(*window)
            self.valid.append(read.valid)
            if read.valid is not None and not read.valid.any():
                self.rows.append(None)  # all nodata: its output is nodata whatever the network says
                continue
            self.rows.append(len(crops))
            crops.append(read.pixels)
        self.x = normalize(torch.stack(crops), run.settings.mean, run.settings.std) if crops else None
        for row, valid in zip(self.rows, self.valid):
            if self.x is not None and row is not None and valid is not None and not valid.all():
                self.x[row, :, ~torch.from_numpy(valid)] = 0.0
        if self.x is not None and pin:
            self.x = self.x.pin_memory()


def _fingerprint(raster: RasterSource, run: _Run, raster_options: RasterOptions) -> dict[str, Any]:
    stat = raster.path.stat()
    test = run.settings.test
    return {
        "input": str(raster.path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "grid": dataclasses.asdict(raster.grid),
        "bands": raster.bands,
        "nodata": raster_options.nodata,
        "window": test.window,
        "stride": test.stride,
        "window_batch_size": run.window_batch_size,
        "classes": run.classes,
        "probs": raster_options.probs,
        "tile": raster_options.tile,
        "backend": run.backend.identity(),
    }


def job_digest(fingerprint: dict[str, Any]) -> str:
    """sha256 of a job's fingerprint: the tag a finished label raster carries (`JOB_TAG`), so a rerun skips it only
    when the same input, weights, precision and options would write it again."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _check_output(source: Path, out: Path) -> None:
    if not is_raster_path(out):
        raise ValueError(f"a label raster is a GeoTIFF: the output must end in .tif or .tiff, got {str(out)!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.resolve() == source.resolve() or probs_path(out).resolve() == source.resolve():
        raise ValueError(f"output {str(out)!r} would overwrite the input raster: choose another output path")


def open_for_model(
    source: str | Path,
    config: ModelConfig,
    weights: PretrainedCfg | None,
    bands: tuple[int, ...] | None,
    raster: RasterOptions,
) -> RasterSource:
    """`source` opened as the input of a model of `config` with `weights`: the `bands` chosen
    (``PredictOptions.bands``), else those the weights were trained on (``weights.bands``), else the band rule's
    (`deeplabv3p.inference.bands`, the rule `predict` reads TIFF files by); `raster`'s nodata."""
    return open_raster(source, config.in_chans, choose_bands(bands, weights), raster.nodata)


def predict_raster(
    model: DeepLabV3PlusNetwork | Backend,
    source: str | Path,
    out: str | Path,
    options: PredictOptions | None = None,
    raster: RasterOptions | None = None,
    *,
    resume: bool = True,
    progress: bool = False,
    **overrides: Any,
) -> RasterSummary:
    """Segment the raster `source` (any file GDAL reads) into the georeferenced label raster `out` (a GeoTIFF), in
    bounded memory, as the module docstring describes.

    Args:
        model, options, overrides: as for `deeplabv3p.predict`; the raster is predicted in slide mode at its own
            resolution (``crop_size`` / ``stride`` choose the window; TTA and ``test_scale`` do not apply).
            ``bands`` (``PredictOptions.bands``) chooses the raster's bands.
        raster: how the raster is read and written (`RasterOptions`: nodata, probabilities, COG).
        resume: continue an interrupted run of the same job (same input, weights, precision and options) from its
            stored strips, and skip an output this job already wrote (its `JOB_TAG`); an output of another job is
            predicted again. False predicts it all again. A `Backend` without an `identity` never resumes.
        progress: show a progress bar (strips and pixels per second).
    """
    started = time.perf_counter()
    chosen = make_options(options, **overrides)
    raster_options = raster or RasterOptions()
    opts = raster_settings(chosen)
    source, out = Path(source), Path(out)
    _check_output(source, out)
    _, _, run = _start(model, [source], opts, {})
    backend = run.backend
    label_dtype(backend.num_classes)
    with (
        gdal_env(source),
        open_for_model(source, backend.config, backend.pretrained_cfg, chosen.bands, raster_options) as src,
    ):
        grid = src.grid
        if not grid.georeferenced:
            logger.warning("%s has no georeference (CRS): %s is written without one", source, out)
        fingerprint = _fingerprint(src, run, raster_options)
        job = job_digest({**fingerprint, "cog": raster_options.cog})  # the strips do not depend on the layout
        if resume and fingerprint["backend"] is None:
            logger.warning("%s cannot tell its weights from others' (no identity()): %s is predicted from the start",
                           type(backend).__name__, out)  # fmt: skip
            resume = False
        if resume and out.is_file() and not strips_pending(out):
            if written_job(out) == job:
                return RasterSummary(source, out, (), (grid.height, grid.width), grid.georeferenced, 0, grid.height,
                                     0.0)  # fmt: skip
            logger.info("%s was written by another job (input, weights or options differ): predicting it again", out)
        store = StripStore(out, fingerprint)
        resumed = store.open(resume)
        stored = _stream(src, run, store, raster_options, progress)
    with gdal_env(out):
        written = write_label_raster(out, grid, store, run.classes, run.palette, raster_options.probs,
                                     raster_options.cog, raster_options.tile, job)  # fmt: skip
    strips = len(store.done)
    store.remove()
    seconds = time.perf_counter() - started
    logger.info("%s: %d strips (%d stored by this run) in %.1f s", out, strips, stored, seconds)
    return RasterSummary(source, out, tuple(written), (grid.height, grid.width), grid.georeferenced, strips,
                         resumed, seconds)  # fmt: skip


def strips_pending(out: Path) -> bool:
    """Whether `out` has stored strips of a run not yet published."""
    return strips_folder(out).is_dir()


def _strip_end(finished: int, height: int, tile: int) -> int:
    """Where the strip stored once rows ``:finished`` are labels ends: at the last whole tile row (so each tile row
    of the output is written once), or at the bottom."""
    return height if finished >= height else finished // tile * tile


def _stream(src: RasterSource, run: _Run, store: StripStore, raster: RasterOptions, progress: bool) -> int:
    """Run every window that touches a row not done yet and store the strips they finish; returns how many."""
    from tqdm.auto import tqdm

    height, width = src.height, src.width
    test = run.settings.test
    assert test.window is not None and test.stride is not None  # raster_settings: slide mode
    windows = slide_windows(height, width, test.window, test.stride)
    per_forward = run.window_batch_size
    chunks = _chunks(windows, per_forward)
    done = store.rows_done
    if done >= height:
        return 0
    first = next(i for i, chunk in enumerate(chunks) if any(w[1] > done for w in chunk))
    nodata = label_dtype(run.backend.num_classes)[1]
    backend, device = run.backend, run.backend.device
    blend = RowBlend(windows, height, width, backend.num_classes, device, top=done, masked=src.has_nodata,
                     nodata=nodata, probs=raster.probs, spill=store.folder)  # fmt: skip
    ends = {_strip_end(n, height, raster.tile) for n in blend.next_row.values()}
    strips_total = len(store.done) + len({e for e in ends if e > done})
    todo = list(range(first, len(chunks)))
    pin = device.type == "cuda"
    batches = made_ahead(lambda i: _Batch(src, chunks[i], run, pin), todo, reads_ahead(device))
    bar = tqdm(total=(height - done) * width, unit="px", unit_scale=True, disable=not progress, desc=src.path.name)
    stored = 0
    try:
        for i, batch in zip(todo, batches):
            logits = None
            if batch.x is not None:
                with backend.session():
                    logits = backend(batch.x.to(device, non_blocking=True))
            for j, window in enumerate(chunks[i]):
                k = i * per_forward + j
                following = windows[k + 1] if k + 1 < len(windows) else None
                next_x1 = following[2] if following is not None and following[:2] == window[:2] else width
                row = batch.rows[j]
                blend.add(window, None if row is None or logits is None else logits[row], batch.valid[j], next_x1)
                end = _strip_end(blend.finished(), height, raster.tile)
                if end <= done:
                    continue
                labels, probs = blend.take(end)
                store.add(done, end, {"labels": labels} if probs is None else {"labels": labels, "probs": probs})
                stored += 1
                bar.update((end - done) * width)
                bar.set_postfix_str(f"strip {len(store.done)}/{strips_total}", refresh=False)
                done = end
    finally:
        bar.close()
        blend.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return stored
