"""Synthetic GeoTIFFs for the raster tests, written with rasterio: a UTM grid, any band count and dtype, tiled or
striped, with or without nodata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

UTM_32N = "EPSG:32632"
ORIGIN = (500000.0, 5500000.0)  # a point in UTM zone 32N (west of Munich)
PIXEL = 0.5  # metres


def synthetic_pixels(height: int, width: int, bands: int = 3, dtype: str = "uint8", seed: int = 0) -> np.ndarray:
    """``(bands, height, width)`` pixels with structure (smooth gradients plus noise), so a network's output varies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(yy / 7 + b) * np.cos(xx / 5 - b) for b in range(bands)])
    values = (base + 1) / 2 * 0.8 + rng.random((bands, height, width), dtype=np.float32) * 0.2
    if dtype == "uint8":
        return np.round(values * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.round(values * 65535).astype(np.uint16)
    return values.astype(dtype)


def write_geotiff(
    path: Path,
    pixels: np.ndarray,
    *,
    crs: str | None = UTM_32N,
    nodata: float | None = None,
    tiled: bool = True,
    block: int = 16,
    alpha: bool = False,
    **profile: Any,
) -> Path:
    """Write ``(bands, H, W)`` `pixels` as a GeoTIFF: north-up, `PIXEL` metres, at `ORIGIN` in `crs` (None: a plain
    TIFF without georeference); tiled in `block` x `block` tiles or striped; `alpha` declares the last band alpha."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import Affine

    count, height, width = pixels.shape
    options: dict[str, Any] = dict(
        driver="GTiff", height=height, width=width, count=count, dtype=str(pixels.dtype), nodata=nodata
    )
    if crs is not None:
        options.update(crs=crs, transform=Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]))
    if tiled:
        options.update(tiled=True, blockxsize=block, blockysize=block)
    else:
        options.update(tiled=False, blockysize=1)
    if count >= 4 and not alpha:
        options["photometric"] = "MINISBLACK"  # else GDAL declares a 4th byte band alpha
    options.update(profile)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **options) as dst:
            dst.write(pixels)
            if alpha:
                dst.colorinterp = [*dst.colorinterp[:-1], ColorInterp.alpha]
    return path
