"""Predicting a raster larger than memory: slide windows read from the file, logits blended as mmseg's slide
inference does (sum / count), finished strips stored as soon as no later window touches them, and a georeferenced
label raster written at the end (`deeplabv3p.inference.raster_writer`).

What is held at once: the rows of logits that unfinished windows still add to (classes x about window + stride +
tile rows x raster width, float32) and a few windows of input; nothing of the raster's height. Rasters are
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
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..fields import check_bands, check_bool, check_choice, check_float, check_int
from .options import PredictOptions, make_options
from .pipeline import _start, normalize, slide_windows
from .prefetch import made_ahead, reads_ahead
from .raster_writer import TILE, label_dtype, probs_path, write_label_raster
from .rasters import RasterSource, is_raster_path, open_raster
from .strips import StripStore

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork
    from .backend import Backend
    from .pipeline import _Run

logger = logging.getLogger("deeplabv3p")

ProbsKind = Literal["confidence", "classes"]
PROBS_KINDS: tuple[ProbsKind, ...] = ("confidence", "classes")
Window = tuple[int, int, int, int]  # y1, y2, x1, x2


@dataclass(frozen=True)
class RasterOptions:
    """How a raster is read and its labels written (the network's options are `PredictOptions`).

    ``bands``: 1-based bands to read, in order (default: all, less a declared alpha for RGB models); ``nodata``: the
    input's nodata value, replacing the raster's own; ``probs``: also write ``NAME_probs.tif``, ``"confidence"``
    (the winning class's probability) or ``"classes"`` (one band per class), uint8-scaled; ``cog``: write Cloud
    Optimized GeoTIFFs; ``tile``: the side of the written tiles (a multiple of 16), also the rows a stored strip
    ends on, so each tile row is written once.
    """

    bands: tuple[int, ...] | None = None
    nodata: float | None = None
    probs: ProbsKind | None = None
    cog: bool = False
    tile: int = TILE

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", check_bands("bands", self.bands))
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
    """The predict options of a raster: slide mode at the raster's own resolution, no TTA, no in-memory probs."""
    if options.tta:
        raise ValueError("tta=True does not apply to rasters: they are predicted window by window at one scale")
    if options.test_scale is not None:
        raise ValueError("test_scale does not apply to rasters: they are predicted at their own resolution")
    if options.mode == "whole":
        raise ValueError(
            "mode='whole' does not apply to rasters: they are predicted in slide windows (choose the window with "
            "crop_size / --window)"
        )
    return options.replace(mode="slide", resize=False, return_probs=False, batch_size=1)


class _Blend:
    """The rows of summed logits that windows still add to, from row `top` down, and (for a raster with nodata)
    which of them are valid: rows are added as windows reach them, invalid until a window that is not all nodata
    says otherwise."""

    def __init__(self, top: int, width: int, classes: int, device: torch.device, masked: bool) -> None:
        self.top, self.width = top, width
        self.sums = torch.zeros((classes, 0, width), dtype=torch.float32, device=device)
        self.valid = np.zeros((0, width), dtype=bool) if masked else None

    @property
    def bottom(self) -> int:
        return self.top + self.sums.shape[1]

    def reach(self, row: int) -> None:
        """Hold rows down to `row` (new rows: zero sums, invalid)."""
        more = row - self.bottom
        if more > 0:
            self.sums = torch.cat([self.sums, self.sums.new_zeros((self.sums.shape[0], more, self.width))], 1)
            if self.valid is not None:
                self.valid = np.concatenate([self.valid, np.zeros((more, self.width), dtype=bool)])

    def add(self, logits: torch.Tensor, window: Window, valid: np.ndarray | None) -> None:
        """Add one window's logits ``(K, h, w)``, as mmseg's slide canvas does."""
        y1, y2, x1, x2 = window
        self.reach(y2)
        self.sums[:, y1 - self.top : y2 - self.top, x1:x2] += logits
        if self.valid is not None and valid is not None:
            self.valid[y1 - self.top : y2 - self.top, x1:x2] = valid

    def take(self, y1: int, y2: int) -> tuple[torch.Tensor, np.ndarray | None]:
        """Rows ``y1:y2`` (sums and valid mask), dropping every row above `y2`."""
        self.reach(y2)
        assert self.top <= y1 <= y2
        sums = self.sums[:, y1 - self.top : y2 - self.top]
        valid = None if self.valid is None else self.valid[y1 - self.top : y2 - self.top]
        self.sums = self.sums[:, y2 - self.top :].clone()
        self.valid = None if self.valid is None else self.valid[y2 - self.top :].copy()
        self.top = y2
        return sums, valid


def _coverage(windows: list[Window], size: int, lo: int, hi: int) -> torch.Tensor:
    """How many of the distinct window extents ``(windows[lo], windows[hi])`` cover each index of one axis."""
    count = torch.zeros(size, dtype=torch.float32)
    for a, b in {(w[lo], w[hi]) for w in windows}:
        count[a:b] += 1
    return count


def _chunks(windows: list[Window], per_forward: int) -> list[list[Window]]:
    return [windows[i : i + per_forward] for i in range(0, len(windows), per_forward)]


class _Batch:
    """One chunk of windows read and normalized for the network (by the reading thread)."""

    def __init__(self, raster: RasterSource, chunk: list[Window], run: _Run, pin: bool) -> None:
        self.windows, self.valid, crops = [], [], []
        settings = run.settings
        for window in chunk:
            read = raster.read(*window)
            if read.valid is not None and not read.valid.any():
                continue  # all nodata: its output is nodata whatever the network says
            x = normalize(read.pixels, settings.mean, settings.std)
            if read.valid is not None and not read.valid.all():
                x[:, :, ~torch.from_numpy(read.valid)] = 0.0
            self.windows.append(window)
            self.valid.append(read.valid)
            crops.append(x)
        self.x = torch.cat(crops) if crops else None
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
        "weights": repr(run.backend.pretrained_cfg),
        "model": repr(run.backend.config),
    }


def _check_output(source: Path, out: Path) -> None:
    if not is_raster_path(out):
        raise ValueError(f"a label raster is a GeoTIFF: the output must end in .tif or .tiff, got {str(out)!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.resolve() == source.resolve() or probs_path(out).resolve() == source.resolve():
        raise ValueError(f"output {str(out)!r} would overwrite the input raster: choose another output path")


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
        raster: how the raster is read and written (`RasterOptions`: bands, nodata, probabilities, COG).
        resume: continue an interrupted run of the same job from its stored strips, and skip an output that is
            already complete (False predicts it all again).
        progress: show a progress bar (strips and pixels per second).
    """
    started = time.perf_counter()
    raster_options = raster or RasterOptions()
    opts = raster_settings(make_options(options, **overrides))
    source, out = Path(source), Path(out)
    _check_output(source, out)
    _, _, run = _start(model, [source], opts, {})
    label_dtype(run.backend.num_classes)
    with open_raster(source, run.backend.config.in_chans, raster_options.bands, raster_options.nodata) as src:
        grid = src.grid
        if not grid.georeferenced:
            logger.warning("%s has no georeference (CRS): %s is written without one", source, out)
        if resume and out.is_file() and not strips_pending(out):
            return RasterSummary(source, out, (), (grid.height, grid.width), grid.georeferenced, 0, grid.height, 0.0)
        store = StripStore(out, _fingerprint(src, run, raster_options))
        resumed = store.open(resume)
        stored = _stream(src, run, store, raster_options, progress)
    written = write_label_raster(out, grid, store, run.classes, run.palette, raster_options.probs,
                                 raster_options.cog, raster_options.tile)  # fmt: skip
    strips = len(store.done)
    store.remove()
    seconds = time.perf_counter() - started
    logger.info("%s: %d strips (%d stored by this run) in %.1f s", out, strips, stored, seconds)
    return RasterSummary(source, out, tuple(written), (grid.height, grid.width), grid.georeferenced, strips,
                         resumed, seconds)  # fmt: skip


def strips_pending(out: Path) -> bool:
    """Whether `out` has stored strips of a run not yet published."""
    from .strips import strips_folder

    return strips_folder(out).is_dir()


def _strip_ends(chunks: list[list[Window]], height: int, tile: int) -> list[int]:
    """The last row (exclusive) of the strip finished after each chunk: the first row a later window touches,
    rounded down to the output's tile rows, so each tile row is written once; the height after the last."""
    ends = []
    for i in range(len(chunks)):
        nxt = chunks[i + 1][0][0] if i + 1 < len(chunks) else height
        ends.append(height if nxt >= height else nxt // tile * tile)
    return ends


def _stream(src: RasterSource, run: _Run, store: StripStore, raster: RasterOptions, progress: bool) -> int:
    """Run every window that touches a row not done yet and store the strips they finish; returns how many."""
    from tqdm.auto import tqdm

    height, width = src.height, src.width
    test = run.settings.test
    assert test.window is not None and test.stride is not None  # raster_settings: slide mode
    windows = slide_windows(height, width, test.window, test.stride)
    chunks = _chunks(windows, run.window_batch_size)
    ends = _strip_ends(chunks, height, raster.tile)
    done = store.rows_done
    if done >= height:
        return 0
    first = next(i for i, chunk in enumerate(chunks) if any(w[1] > done for w in chunk))
    rows, cols = _coverage(windows, height, 0, 1), _coverage(windows, width, 2, 3)
    nodata = label_dtype(run.backend.num_classes)[1]
    out_dtype = np.uint8 if nodata == 255 else np.uint16
    backend, device = run.backend, run.backend.device
    blend = _Blend(chunks[first][0][0], width, backend.num_classes, device, src.has_nodata)
    todo = list(range(first, len(chunks)))
    pin = device.type == "cuda"
    batches = made_ahead(lambda i: _Batch(src, chunks[i], run, pin), todo, reads_ahead(device))
    strips_total = len(store.done) + len({e for e in ends if e > done})
    bar = tqdm(total=(height - done) * width, unit="px", unit_scale=True, disable=not progress, desc=src.path.name)
    stored = 0
    try:
        for i, batch in zip(todo, batches):
            if batch.x is not None:
                with backend.session():
                    logits = backend(batch.x.to(device, non_blocking=True))
                for j, (window, valid) in enumerate(zip(batch.windows, batch.valid)):
                    blend.add(logits[j], window, valid)
            end = ends[i]
            if end <= done:
                continue
            sums, valid = blend.take(done, end)
            scores = sums / (rows[done:end, None] * cols[None]).to(sums.device)
            labels = scores.argmax(dim=0).cpu().numpy().astype(out_dtype)
            if valid is not None:
                labels[~valid] = nodata
            arrays = {"labels": labels}
            if raster.probs is not None:
                arrays["probs"] = _scaled_probs(scores, valid, raster.probs)
            store.add(done, end, arrays)
            stored += 1
            bar.update((end - done) * width)
            bar.set_postfix_str(f"strip {len(store.done)}/{strips_total}", refresh=False)
            done = end
    finally:
        bar.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return stored


def _scaled_probs(scores: torch.Tensor, valid: np.ndarray | None, kind: ProbsKind) -> np.ndarray:
    """Softmax probabilities of a strip's blended logits, times 255 rounded to uint8 (0 on nodata)."""
    probs = scores.float().softmax(dim=0)
    if kind == "confidence":
        probs = probs.max(dim=0, keepdim=True).values
    scaled = (probs * 255.0).round().to(torch.uint8).cpu().numpy()
    if valid is not None:
        scaled[:, ~valid] = 0
    return scaled
