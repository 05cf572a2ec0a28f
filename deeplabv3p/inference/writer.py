"""Predicting a folder (or list) of image files into an output folder: sharded over processes, resumable, with a
manifest.

`write_predictions` writes ``OUT/NAME.png`` (and ``OUT/NAME_overlay.jpg``) for every input ``NAME.EXT``, or with
``raster=RasterOptions(...)`` the georeferenced label raster ``OUT/NAME.tif`` of every input raster, streamed in
bounded memory (`deeplabv3p.inference.raster_predict`):

- under torchrun (or with ``shard=(rank, world_size)``) each process takes every world-th input from its rank and
  writes only those;
- outputs that already exist and decode to the end are skipped, and a label raster only when the same job wrote
  it (its input, weights, precision and options: `deeplabv3p.inference.raster_predict.job_digest`), so a rerun
  after a crash or preemption does only what is missing or cut short (a raster resumes at its first unfinished
  strip); every file is written under a temporary name, checked and renamed once complete, so none is ever
  half-written;
- each process appends one JSON line per written image to its own ``OUT/.manifest.rank{R}.jsonl``; at the end
  rank 0 merges them with the previous manifest into ``OUT/manifest.jsonl`` (``input``, ``output``, ``overlay``,
  ``size`` as ``[height, width]``, ``seconds``, ``rank``), one line per input, in input order. An output found
  already written without a record (a crash between the rename and the record) gets ``"seconds": null``;
- an input that cannot be read (empty, cut short, not an image, over the pixel budget ``max_pixels``) is reported
  (a log line, and a manifest line with ``"error"``: the file and the reason, ``"output"`` the file it would have
  been), skipped, and tried again by the next run; the others go on (`WriteSummary.failures` lists them);
- a run that stops on an error still merges the manifest of what it wrote (single process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..atomic import atomic_write_text
from ..fields import check_float, path_kind
from ..models.digest import digest_once
from .backend import as_backend
from .images import ImageItem, expand_inputs
from .options import PredictOptions, make_options
from .pipeline import predict_iter_skipping
from .prefetch import Unreadable
from .raster_predict import RasterOptions, open_for_model, predict_raster, raster_settings
from .rasters import is_raster_path, require_rasterio

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork
    from .backend import Backend

logger = logging.getLogger("deeplabv3p")

MANIFEST = "manifest.jsonl"
_PART_GLOB = ".manifest.rank*.jsonl"


def _part(out: Path, rank: int) -> Path:
    return out / f".manifest.rank{rank}.jsonl"


@dataclass(frozen=True)
class WriteSummary:
    """What one process did: of `total` inputs, `share` were its own; it wrote `written` and found `skipped`
    already there; `failures` are the inputs it could not read, with the reason (not written: a rerun tries them
    again). `manifest` is the merged manifest (None on ranks that do not merge)."""

    total: int
    share: int
    written: int
    skipped: int
    manifest: Path | None
    failures: tuple[tuple[Path, str], ...] = ()


@dataclass(frozen=True)
class _Job:
    """One input file and the files it is written to."""

    input: Path
    label: Path
    overlay: Path | None

    def written(self) -> bool:
        """Whether its files exist (this run's are complete: they were verified before the rename)."""
        return self.label.is_file() and (self.overlay is None or self.overlay.is_file())

    def done(self) -> bool:
        """Whether its image files exist and decode to the end: a file that a full disk or an older writer cut short
        is done again, never trusted (about 10 ms a label, 60 ms an overlay at 1024x2048). (A label raster is done
        when `predict_raster` finds its job tag.)"""
        return self.written() and all(_decodes(path) for path in (self.label, self.overlay) if path is not None)


def _raster_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` of a label raster whose last row reads, else None."""
    rasterio = require_rasterio("checking label rasters")
    try:
        with rasterio.open(path) as src:
            src.read(1, window=rasterio.windows.Window(0, src.height - 1, src.width, 1))
            return src.height, src.width
    except rasterio.errors.RasterioError:
        return None


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True


def output_paths(
    items: list[ImageItem], out: Path, overlay: bool, suffix: str = ".png"
) -> list[tuple[Path, Path | None]]:
    """Label (and overlay) file of each input: named after it (``NAME`` + `suffix`), never an input file, never
    shared."""
    inputs = {item.path.resolve() for item in items if item.path is not None}
    owners: dict[Path, Path] = {}
    paths = []
    for item in items:
        if item.path is None:
            raise ValueError(f"{item.name}: writing predictions needs image files (outputs are named after them)")
        stem = item.path.stem
        label = out / f"{stem}{suffix}"
        over = out / f"{stem}_overlay.jpg" if overlay else None
        for target in (label, over):
            if target is None:
                continue
            resolved = target.resolve()
            if resolved in inputs:
                raise ValueError(f"output {str(target)!r} would overwrite an input image: choose another output folder")
            if resolved in owners:
                raise ValueError(
                    f"inputs {str(owners[resolved])!r} and {str(item.path)!r} would both be written to "
                    f"{str(target)!r}: write them to different output folders"
                )
            owners[resolved] = item.path
        paths.append((label, over))
    return paths


def _jobs(inputs: Any, out: Path, overlay: bool, suffix: str = ".png") -> list[_Job]:
    if (kind := path_kind(out)) not in ("nothing", "a folder"):
        raise ValueError(f"output folder {str(out)!r} is {kind}, not a folder")
    for given in inputs if isinstance(inputs, list | tuple) else [inputs]:
        if isinstance(given, str | os.PathLike) and Path(given).is_dir() and Path(given).resolve() == out.resolve():
            raise ValueError(
                f"the output folder {str(out)!r} is also an input folder: a rerun would read the predictions as "
                "images. Write them to a folder of their own (e.g. --out masks/)"
            )
    items, _ = expand_inputs(inputs)
    return [
        _Job(item.path, label, over)  # type: ignore[arg-type]  # output_paths checked that each has a path
        for item, (label, over) in zip(items, output_paths(items, out, overlay, suffix))
    ]


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a manifest file; a line cut short by a crash is skipped."""
    records: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return records
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("output"), str):
            records.append(record)
    return records


def _record(job: _Job, size: tuple[int, int], seconds: float | None, rank: int | None) -> dict[str, Any]:
    """The manifest line of `job`: see the module docstring."""
    return {
        "input": str(job.input),
        "output": str(job.label),
        "overlay": None if job.overlay is None else str(job.overlay),
        "size": list(size),
        "seconds": seconds,
        "rank": rank,
    }


def _failure_record(job: _Job, reason: str, rank: int) -> dict[str, Any]:
    """The manifest line of an input that could not be read: no size, the reason in ``error``."""
    return {"input": str(job.input), "output": str(job.label), "error": reason, "size": None, "rank": rank}


def _found_record(job: _Job) -> dict[str, Any]:
    if is_raster_path(job.label):
        size = _raster_size(job.label) or (0, 0)
        return _record(job, size, None, None)
    with Image.open(job.label) as im:
        width, height = im.size
    return _record(job, (height, width), None, None)


def _merge(out: Path, jobs: list[_Job]) -> Path:
    parts = sorted(out.glob(_PART_GLOB))
    records: dict[str, dict[str, Any]] = {}
    for path in [out / MANIFEST, *parts]:  # later records (this run's) replace earlier ones
        for record in _read_records(path):
            records[record["output"]] = record
    lines = []
    for job in jobs:
        key = str(job.label)
        found = records.pop(key) if key in records else None
        if not job.written():
            if found is not None and "error" in found:  # unreadable: listed until a run writes it
                lines.append(json.dumps(found))
            continue
        lines.append(json.dumps(found if found is not None and "error" not in found else _found_record(job)))
    # Records of earlier runs on other inputs into the same folder stay while their outputs do.
    lines += [json.dumps(r) for r in records.values() if "error" not in r and Path(r["output"]).is_file()]
    manifest = out / MANIFEST
    atomic_write_text(manifest, "".join(line + "\n" for line in lines))
    for part in parts:
        part.unlink(missing_ok=True)
    return manifest


def merge_manifest(inputs: Any, out: str | os.PathLike, overlay: bool = False, rasters: bool = False) -> Path:
    """Merge the per-process records in `out` into ``OUT/manifest.jsonl`` for the job `inputs` -> `out` (done by
    `write_predictions` itself except when it was given an explicit `shard` outside a process group); `rasters`:
    the job wrote label rasters (``raster=...``)."""
    out = Path(out)
    return _merge(out, _jobs(inputs, out, overlay, ".tif" if rasters else ".png"))


def write_predictions(
    model: DeepLabV3PlusNetwork | Backend,
    inputs: Any,
    out: str | os.PathLike,
    options: PredictOptions | None = None,
    *,
    overlay: bool = False,
    alpha: float = 0.5,
    resume: bool = True,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    raster: RasterOptions | None = None,
    **overrides: Any,
) -> WriteSummary:
    """Segment image files and write their label maps (and overlays) to `out`, as described in the module docstring.

    Args:
        model, options, overrides: as for `deeplabv3p.predict` (a `DeepLabV3Plus` or a `Backend`).
        inputs: image files and/or folders of images, or a list of them.
        out: output folder, created if missing.
        overlay: also write ``NAME_overlay.jpg``, the labels blended over the image with opacity `alpha`.
        resume: skip inputs whose outputs exist (False writes every one again).
        shard: ``(rank, world_size)`` of this process; default: the process group's or torchrun's environment.
            Without a process group the merge is left to a final `merge_manifest` call (unless the world is 1).
        progress: show a progress bar.
        raster: write each input as a georeferenced label raster ``OUT/NAME.tif``, streamed, read and written as
            these `RasterOptions` say (bands, nodata, probabilities, COG); None writes PNG label maps.
    """
    from tqdm.auto import tqdm

    from .. import distributed

    check_float("alpha", alpha, 0.0, 1.0)
    if raster is not None and overlay:
        raise ValueError("overlay=True draws PNG label maps; label rasters (raster=...) have no overlay")
    out = Path(out)
    jobs = _jobs(inputs, out, overlay, ".png" if raster is None else ".tif")
    rank, world = shard if shard is not None else distributed.process_share()
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
    mine = jobs[rank::world]
    if raster is not None:  # predict_raster knows which finished rasters this job wrote (their job tag) and skips them
        written = _write_rasters(model, mine, out, rank, options, raster, resume, progress, overrides)
        return _finish(out, jobs, len(mine), written, written, rank, world, ())
    todo = [job for job in mine if not (resume and job.done())]
    # Options and model are checked (by predict_iter_skipping) before anything is written.
    results = predict_iter_skipping(model, [job.input for job in todo] or [jobs[0].input], options, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    failures: list[tuple[Path, str]] = []
    try:
        if todo:
            with _part(out, rank).open("a", encoding="utf-8") as part:
                for job, result in zip(tqdm(todo, unit="img", disable=not progress), results):
                    if isinstance(result, Unreadable):
                        reason = str(result.error)
                        logger.warning("skipped an unreadable input: %s", reason)
                        failures.append((job.input, reason))
                        record = _failure_record(job, reason, rank)
                    else:
                        result.save(job.label)
                        if job.overlay is not None:
                            result.save(job.overlay, kind="overlay", alpha=alpha)
                        record = _record(job, result.size, result.seconds, rank)
                        written += 1
                    part.write(json.dumps(record) + "\n")
                    part.flush()
                    os.fsync(part.fileno())
    except BaseException:
        if world == 1:  # what was written before the error is in the manifest (its own error is what is raised)
            with contextlib.suppress(Exception):
                _merge(out, jobs)
        raise
    return _finish(out, jobs, len(mine), len(todo), written, rank, world, tuple(failures))


def _finish(
    out: Path,
    jobs: list[_Job],
    mine: int,
    todo: int,
    written: int,
    rank: int,
    world: int,
    failures: tuple[tuple[Path, str], ...],
) -> WriteSummary:
    """Merge the manifest (rank 0, once every process is done) and sum up what this process did."""
    from .. import distributed

    grouped = world > 1 and distributed.current()[1] == world
    manifest = None
    if world == 1 or grouped:
        distributed.barrier()
        if rank == 0:
            manifest = _merge(out, jobs)
    return WriteSummary(len(jobs), mine, written, mine - todo, manifest, failures)


def _write_rasters(
    model: DeepLabV3PlusNetwork | Backend,
    todo: list[_Job],
    out: Path,
    rank: int,
    options: PredictOptions | None,
    raster: RasterOptions,
    resume: bool,
    progress: bool,
    overrides: dict[str, Any],
) -> int:
    """Predict each input raster of `todo` into its label raster (with `resume`, those this job already wrote are
    skipped), recording each written in this process's manifest part; returns how many were written. Options, and
    every raster's bands and dtype, are checked before the first is predicted."""
    opts = make_options(options, **overrides)
    raster_settings(opts)
    backend = as_backend(model)  # one backend checks every raster up front and predicts them all
    for job in todo:
        open_for_model(job.input, backend.config, backend.pretrained_cfg, opts.bands, raster).close()
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with _part(out, rank).open("a", encoding="utf-8") as part, digest_once():  # the weights are hashed once
        for job in todo:
            summary = predict_raster(
                backend, job.input, job.label, options, raster, resume=resume, progress=progress, **overrides
            )
            if not summary.written:
                continue
            part.write(json.dumps(_record(job, summary.size, summary.seconds, rank)) + "\n")
            part.flush()
            os.fsync(part.fileno())
            written += 1
    return written
