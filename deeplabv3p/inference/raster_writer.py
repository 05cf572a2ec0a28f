"""The georeferenced label raster (and its probabilities) of a raster prediction, written from its finished strips
(`deeplabv3p.inference.strips`) and published only when complete.

The label raster is a tiled (256 x 256 by default), deflate-compressed GeoTIFF with the input's CRS, transform and
size (no CRS for an input without one): one band of class indices, uint8 up to 255 classes and uint16 beyond; nodata
is the largest value of the type (255, or 65535), which no class uses. The palette is the band's GDAL colour table
and the class names are in the metadata (``CLASS_NAMES``, a JSON list, and ``CLASS_<i>=name``), so QGIS and
``gdalinfo`` show a classified map; ``DEEPLABV3P_JOB`` is the sha256 of what made it (input, weights, precision,
options), by which a rerun knows whether it is already done. The probabilities (``NAME_probs.tif``, on request) are
uint8, the probability times 255 rounded, with GDAL scale ``1/255`` so GDAL-aware readers see 0..1: one band, the
winning class's probability (``"confidence"``), or one band per class (``"classes"``); nodata pixels hold 0.
With ``cog=True`` both are Cloud Optimized GeoTIFFs (GDAL's COG driver, overviews by mode for labels and averaging
for probabilities).

Both files are written in a staging folder beside the output (`deeplabv3p.atomic.atomic_files`), reopened and
checked, then moved into place together, the labels last, so their presence means the job is complete; a failure
leaves neither.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_files, temporary_name
from .rasters import RasterGrid, require_rasterio
from .strips import StripStore

JOB_TAG = "DEEPLABV3P_JOB"
TILE = 256  # default tile side of the written rasters; strips end on multiples of it, so each tile row is written once
PROBS_SCALE = 1.0 / 255.0


def label_dtype(num_classes: int) -> tuple[str, int]:
    """``(dtype, nodata)`` of a label raster of `num_classes` classes: uint8 with nodata 255 up to 255 classes,
    uint16 with nodata 65535 up to 65535."""
    if num_classes <= 255:
        return "uint8", 255
    if num_classes <= 65535:
        return "uint16", 65535
    raise ValueError(f"cannot store {num_classes} classes in a 16-bit label raster (at most 65535, 65535 is nodata)")


def probs_path(out: Path) -> Path:
    """Where the probabilities of the label raster `out` go: ``NAME_probs.tif`` beside it."""
    return out.with_name(f"{out.stem}_probs{out.suffix}")


def _profile(grid: RasterGrid, count: int, dtype: str, nodata: float | None, tile: int) -> dict[str, Any]:
    rasterio = require_rasterio("writing label rasters")
    profile: dict[str, Any] = dict(
        driver="GTiff",
        height=grid.height,
        width=grid.width,
        count=count,
        dtype=dtype,
        nodata=nodata,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        bigtiff="IF_SAFER",
    )
    if grid.crs is not None:
        profile.update(crs=rasterio.crs.CRS.from_wkt(grid.crs), transform=rasterio.Affine(*grid.transform))
    return profile


def _write(path: Path, profile: dict[str, Any], store: StripStore, key: str, describe: Any) -> None:
    """Copy `store`'s `key` arrays, strip by strip, into a new GeoTIFF at `path`; `describe(dst)` adds metadata."""
    rasterio = require_rasterio("writing label rasters")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            describe(dst)
            for y1, y2 in store.done:
                array = store.load(key, (y1, y2))
                if array.ndim == 2:
                    array = array[None]
                dst.write(array, window=rasterio.windows.Window(0, y1, profile["width"], y2 - y1))


def _check(path: Path, profile: dict[str, Any]) -> None:
    """Reopen a written raster: its size, band count and dtype as intended, and its last row readable."""
    rasterio = require_rasterio("writing label rasters")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            got = (src.height, src.width, src.count, src.dtypes[0])
            want = (profile["height"], profile["width"], profile["count"], profile["dtype"])
            if got != want:
                raise OSError(f"{path}: wrote {got}, expected {want} (height, width, bands, dtype)")
            src.read(window=rasterio.windows.Window(0, src.height - 1, src.width, 1))


def _cog(tmp: Path, resampling: str, tile: int) -> Path:
    """A Cloud Optimized GeoTIFF copy of the GeoTIFF `tmp` (GDAL streams it: nothing full-size in memory)."""
    require_rasterio("writing Cloud Optimized GeoTIFFs")
    import rasterio.shutil

    cog = temporary_name(tmp.with_name(tmp.name + ".cog"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        rasterio.shutil.copy(tmp, cog, driver="COG", compress="DEFLATE", blocksize=tile, overview_resampling=resampling)
    return cog


def _finish(path: Path, profile: dict[str, Any], cog: bool, resampling: str) -> None:
    """Check a written raster, and with `cog` turn it into a Cloud Optimized GeoTIFF in place."""
    _check(path, profile)
    if cog:
        _cog(path, resampling, profile["blockxsize"]).replace(path)


def write_label_raster(
    out: Path,
    grid: RasterGrid,
    store: StripStore,
    classes: tuple[str, ...],
    palette: np.ndarray,
    probs: str | None = None,
    cog: bool = False,
    tile: int = TILE,
    job: str | None = None,
) -> list[Path]:
    """Write the label raster `out` (and with `probs` its probabilities, `probs_path`) from `store`'s strips, as
    the module docstring describes, tagged with `job` (`JOB_TAG`); returns the paths written, labels last."""
    dtype, nodata = label_dtype(len(classes))
    labels = _profile(grid, 1, dtype, nodata, tile)

    def describe_labels(dst: Any) -> None:
        dst.write_colormap(1, {i: (*map(int, palette[i]), 255) for i in range(len(classes))})
        dst.update_tags(CLASS_NAMES=json.dumps(list(classes)), **{f"CLASS_{i}": n for i, n in enumerate(classes)})
        if job is not None:
            dst.update_tags(**{JOB_TAG: job})
        dst.set_band_description(1, "class")

    written = []
    with atomic_files(out) as staging:  # both files appear together, the labels last, or neither
        if probs is not None:
            bands = 1 if probs == "confidence" else len(classes)
            profile = _profile(grid, bands, "uint8", None, tile)
            names = ["confidence"] if probs == "confidence" else list(classes)

            def describe_probs(dst: Any) -> None:
                dst.scales = (PROBS_SCALE,) * bands
                dst.offsets = (0.0,) * bands
                for i, name in enumerate(names):
                    dst.set_band_description(i + 1, name)

            staged = staging / probs_path(out).name
            _write(staged, profile, store, "probs", describe_probs)
            _finish(staged, profile, cog, "average")
            written.append(probs_path(out))
        staged = staging / out.name
        _write(staged, labels, store, "labels", describe_labels)
        _finish(staged, labels, cog, "mode")
    written.append(out)
    return written


def written_job(out: Path) -> str | None:
    """The `JOB_TAG` of the label raster `out` (None when it has none or cannot be read)."""
    rasterio = require_rasterio("reading label rasters")
    try:
        with rasterio.open(out) as src:
            return src.tags().get(JOB_TAG)
    except rasterio.errors.RasterioError:
        return None
