"""Georeferenced rasters (GeoTIFF, COG, JP2, VRT: anything GDAL reads) opened once and read window by window as the
network's input, through the optional rasterio package (``pip install "deeplabv3p[geo]"``).

A window is read exactly as the in-memory path reads an image (`deeplabv3p.inference.images`): the bands laid out
for the model's ``in_chans`` by `lay_out_bands` (gray repeated, a declared alpha band dropped for RGB models) and the
values converted by `to_input_scale` (uint8 as is; uint16 keeps its high byte for RGB models, every bit as
``value * 255 / 65535`` for multi-band ones; floats must lie in [0, 1]). So a raster small enough to hold gives the
same network input as ``predict(array)`` on its pixels.

Band selection (``bands=(4, 3, 2)``) is 1-based, as GDAL counts; which bands a model reads when none are chosen is
the rule of `deeplabv3p.inference.bands`, shared with TIFF files read in memory. Nodata is the raster's own (a
nodata value, an internal mask or an alpha band: GDAL's mask bands) or a value given by the caller, which replaces
it; a pixel is nodata when every selected band says so (GDAL's rule for a per-dataset nodata value). Nodata pixels
are set to 0 before the value conversion, so a fill value such as -9999 never trips the float range check; the
prediction blanks them (`deeplabv3p.inference.raster_predict`).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch

from ..fields import band_counts, band_counts_text, check_band_count, check_bands, check_float
from .bands import BandChoice
from .images import ImageSpec, lay_out_bands, to_input_scale
from .tiff import is_tiff

GEO_EXTRA = 'pip install "deeplabv3p[geo]"'
GDAL_CACHE_MB = 64  # GDAL's block cache in a process that reads or writes rasters (`gdal_env`)
_READABLE_DTYPES = ("uint8", "uint16", "float32", "float64")


def require_rasterio(purpose: str) -> ModuleType:
    """The ``rasterio`` module, or an ImportError saying what needed it and which extra installs it."""
    try:
        import rasterio
    except ImportError as e:
        raise ImportError(f"{purpose} needs the optional package rasterio (GDAL): {GEO_EXTRA}") from e
    return rasterio


def gdal_env(path: str | Path) -> Any:
    """rasterio's environment for reading or writing `path`: GDAL's block cache bounded to `GDAL_CACHE_MB` (its
    default is 5% of the machine's memory, which reading a large raster fills, in every process that reads), unless
    ``GDAL_CACHEMAX`` is set. Prediction holds it for a whole raster, training for each window it reads."""
    rasterio = require_rasterio(f"the raster {str(path)!r}")
    if "GDAL_CACHEMAX" in os.environ:
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20)


def is_raster_path(path: str | Path) -> bool:
    """Whether an output path names a GeoTIFF (``.tif`` / ``.tiff``)."""
    return is_tiff(Path(path))


@dataclass(frozen=True)
class RasterGrid:
    """Where a raster's pixels lie: its size, its CRS (WKT; None for a plain image) and its affine transform
    (GDAL's geotransform order is not used: this is rasterio's ``Affine`` as a 6-tuple ``a, b, c, d, e, f``)."""

    height: int
    width: int
    crs: str | None
    transform: tuple[float, ...]

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    def describe(self) -> str:
        crs = "no CRS" if self.crs is None else f"CRS {self.crs[:60]}"
        return f"{self.height}x{self.width} (HxW), {crs}, transform {tuple(round(v, 6) for v in self.transform)}"


class RasterWindow(NamedTuple):
    """One window read for the network: ``pixels`` ``(in_chans, h, w)`` uint8 or float32 on the 0..255 scale, and
    ``valid`` ``(h, w)`` bool (False: nodata), None when the raster has no nodata."""

    pixels: torch.Tensor
    valid: np.ndarray | None


def _band_plan(src: Any, in_chans: int, choice: BandChoice | None, name: str) -> tuple[int, ...]:
    """The 1-based bands to read for a model of `in_chans`: the `choice` (`deeplabv3p.inference.bands`; each band
    must exist), else every band, less a declared alpha band for RGB models (the alpha still masks nodata: it is
    GDAL's mask band). The count must fit the model (`deeplabv3p.fields.band_counts`)."""
    rasterio = require_rasterio("reading rasters")
    count = src.count
    if choice is not None:
        problem = choice.missing(count)
        if problem is not None:
            raise ValueError(f"{name}: {problem}")
        return check_band_count(f"{name}: bands", choice.bands, in_chans)
    chosen = tuple(range(1, count + 1))
    alpha = rasterio.enums.ColorInterp.alpha
    if in_chans == 3 and count in (2, 4) and src.colorinterp[-1] == alpha:
        chosen = chosen[:-1]
    elif in_chans == 3 and count == 4:
        raise ValueError(
            f"{name}: the raster has 4 bands and does not declare the 4th alpha (RGB + NIR?), so an RGB model "
            "(in_chans=3) would drop a band: choose three with bands=(1, 2, 3) (--bands 1,2,3), or build the "
            "model for 4 bands (in_chans=4)"
        )
    if len(chosen) not in band_counts(in_chans):
        fit = band_counts_text(in_chans)
        raise ValueError(
            f"{name}: a model of in_chans={in_chans} reads {fit} bands but the raster has {len(chosen)} "
            f"({chosen}); choose {fit} with bands=(...) (--bands B,B,B), or build the model with "
            f"in_chans={len(chosen)}"
        )
    return chosen


class RasterSource:
    """A raster opened for reading windows as network input (see the module docstring). Use as a context manager,
    or `close` it. Not shared between threads: one reader at a time (the prefetching thread, or the caller)."""

    def __init__(
        self,
        path: str | Path,
        in_chans: int = 3,
        bands: tuple[int, ...] | list[int] | BandChoice | None = None,
        nodata: float | None = None,
    ) -> None:
        rasterio = require_rasterio(f"reading the raster {str(path)!r}")
        self.path = Path(path)
        self.name = str(path)
        choice = bands if isinstance(bands, BandChoice) or bands is None else BandChoice(check_bands("bands", bands))
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            check_float("nodata", nodata)
        if not self.path.is_file():
            raise FileNotFoundError(f"raster file {self.name!r} does not exist")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            try:
                self._src = rasterio.open(self.path)
            except rasterio.errors.RasterioIOError as e:
                raise ValueError(f"cannot read raster {self.name!r}: {e}") from None
        try:
            self._setup(rasterio, in_chans, choice, nodata)
        except BaseException:
            self._src.close()
            raise

    def _setup(self, rasterio: ModuleType, in_chans: int, choice: BandChoice | None, nodata: float | None) -> None:
        src = self._src
        self.bands = _band_plan(src, in_chans, choice, self.name)
        dtypes = {src.dtypes[b - 1] for b in self.bands}
        if len(dtypes) != 1 or next(iter(dtypes)) not in _READABLE_DTYPES:
            raise TypeError(
                f"raster {self.name!r} holds {'/'.join(sorted(dtypes))} pixels in bands {self.bands}; accepted: "
                "uint8, uint16 or floating point in [0, 1] (convert it first, e.g. gdal_translate -ot Byte -scale)"
            )
        self.dtype: str = next(iter(dtypes))
        self.spec = ImageSpec(in_chans)
        crs = None if src.crs is None else src.crs.to_wkt()
        transform = tuple(src.transform)[:6]
        self.grid = RasterGrid(src.height, src.width, crs, transform)
        self.nodata_override = nodata
        flags = [src.mask_flag_enums[b - 1] for b in self.bands]
        own_mask = any(rasterio.enums.MaskFlags.all_valid not in f for f in flags)
        self.has_nodata = nodata is not None or own_mask
        self.nodata = nodata if nodata is not None else src.nodata
        lay_out_bands(torch.zeros((len(self.bands), 1, 1), dtype=torch.uint8), in_chans, self.name)

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def band_count(self) -> int:
        """How many bands the file holds (all of them, not only the selected ones)."""
        return int(self._src.count)

    @property
    def block_shapes(self) -> list[tuple[int, int]]:
        """GDAL's block ``(h, w)`` of each selected band (tiles, or strips of whole rows)."""
        return [tuple(self._src.block_shapes[b - 1]) for b in self.bands]

    def read_raw(self, y1: int, y2: int, x1: int, x2: int) -> np.ndarray:
        """Rows ``y1:y2``, columns ``x1:x2`` of the selected bands, ``(C, h, w)`` in the stored dtype."""
        rasterio = require_rasterio("reading rasters")
        window = rasterio.windows.Window(x1, y1, x2 - x1, y2 - y1)
        try:
            return self._src.read(list(self.bands), window=window)
        except rasterio.errors.RasterioIOError as e:
            raise ValueError(f"cannot read rows {y1}:{y2}, columns {x1}:{x2} of raster {self.name!r}: {e}") from None

    def band_masks(self, raw: np.ndarray, y1: int, y2: int, x1: int, x2: int) -> np.ndarray | None:
        """``(C, h, w)`` bool, False where a selected band is nodata there; None when the raster has no nodata."""
        if not self.has_nodata:
            return None
        if self.nodata_override is not None:
            value = self.nodata_override
            return ~np.isnan(raw) if math.isnan(value) else raw != np.asarray(value).astype(raw.dtype)
        rasterio = require_rasterio("reading rasters")
        window = rasterio.windows.Window(x1, y1, x2 - x1, y2 - y1)
        return np.asarray(self._src.read_masks(list(self.bands), window=window) != 0)

    def read_stored(self, y1: int, y2: int, x1: int, x2: int) -> RasterWindow:
        """A window's bands laid out for the model but still in the stored dtype (as an image file is before
        `to_input_scale`; training's ``load`` hands these to `evaluate`), and its valid mask: a pixel is nodata
        where every band is; a band's nodata value in a pixel that other bands hold is read as 0."""
        raw = self.read_raw(y1, y2, x1, x2)
        masks = self.band_masks(raw, y1, y2, x1, x2)
        valid = None if masks is None else np.asarray(masks.any(axis=0))
        if masks is not None and not masks.all():
            raw = np.where(masks, raw, np.zeros((), dtype=raw.dtype))
        pixels = lay_out_bands(torch.from_numpy(np.ascontiguousarray(raw)), self.spec.in_chans, self.name)
        return RasterWindow(pixels, valid)

    def read(self, y1: int, y2: int, x1: int, x2: int) -> RasterWindow:
        """A window as network input and its valid mask (see `RasterWindow` and `read_stored`)."""
        stored = self.read_stored(y1, y2, x1, x2)
        where = f"{self.name} (rows {y1}:{y2}, columns {x1}:{x2})"
        return RasterWindow(to_input_scale(stored.pixels, self.spec, where), stored.valid)

    def read_all(self) -> RasterWindow:
        """The whole raster as one window (for small rasters and tests)."""
        return self.read(0, self.height, 0, self.width)

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_raster(
    path: str | Path,
    in_chans: int = 3,
    bands: tuple[int, ...] | list[int] | BandChoice | None = None,
    nodata: float | None = None,
) -> RasterSource:
    """Open `path` for reading windows as the input of a model of `in_chans` bands (see `RasterSource`): `bands` as
    chosen (a `BandChoice` says whether they are the weights' trained bands), else the rule for `in_chans`."""
    return RasterSource(path, in_chans, bands, nodata)
