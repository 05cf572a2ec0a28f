"""Multi-band TIFF files through the optional ``tifffile`` package (``pip install "deeplabv3p[tiff]"``).

PIL reads 8-bit RGB and single-band TIFFs but not the band layouts remote sensing uses (more than four samples,
16-bit or float multi-sample data, planar or page-per-band files). `read_tiff` returns the bands of the first
image series as stored, ``(C, H, W)``: pixel-interleaved samples, planar samples and pages all become bands, and
whether the last band is declared alpha (the TIFF's ExtraSamples), the only band an RGB model may drop.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np

TIFF_EXTENSIONS = (".tif", ".tiff")
TIFF_EXTRA = 'pip install "deeplabv3p[tiff]"'
_SPATIAL_AXES = ("Y", "X")
ALPHA_EXTRASAMPLES = (1, 2)  # ExtraSamples values: associated (premultiplied) and unassociated alpha


class TiffBands(NamedTuple):
    """A TIFF's bands ``(C, H, W)`` in the stored dtype, and whether the last one is declared alpha."""

    pixels: np.ndarray
    alpha: bool


def is_tiff(path: Path) -> bool:
    """Whether `path` is named as a TIFF (read as one; an output so named is written as a GeoTIFF)."""
    return path.suffix.lower() in TIFF_EXTENSIONS


def require_tifffile(purpose: str) -> ModuleType:
    """The ``tifffile`` module, or an ImportError saying what needed it and which extra installs it."""
    try:
        import tifffile
    except ImportError as e:
        raise ImportError(f"{purpose} needs the optional package tifffile: {TIFF_EXTRA}") from e
    return tifffile


def read_tiff(path: Path) -> TiffBands:
    """The first image series of a TIFF as ``(C, H, W)``, in the stored dtype (a single band gives C = 1), and
    whether its last band is declared alpha (samples of one page whose last ExtraSample is alpha; pages never are).

    Axes of size one are dropped; what remains besides height and width is the band axis. Files with more than one
    such axis (time series, z-stacks of multi-band images) are refused, as there is no single band order to take.
    """
    tifffile = require_tifffile(f"reading the TIFF file {str(path)!r} band by band")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
            extrasamples = tuple(series.keyframe.extrasamples)
    except Exception as e:  # tifffile raises its own errors, ValueError and OSError for damaged or exotic files
        hint = " (pip install imagecodecs for its compression)" if "imagecodecs" in str(e) else ""
        raise ValueError(f"cannot read TIFF file {str(path)!r}: {e}{hint}") from e
    if len(axes) != array.ndim or not all(axis in axes for axis in _SPATIAL_AXES):
        raise ValueError(f"cannot read TIFF file {str(path)!r}: its image has axes {axes!r}, no height and width")
    kept = [i for i, axis in enumerate(axes) if axis in _SPATIAL_AXES or array.shape[i] > 1]
    array = array.reshape([array.shape[i] for i in kept])
    axes = "".join(axes[i] for i in kept)
    bands = [axis for axis in axes if axis not in _SPATIAL_AXES]
    if len(bands) > 1:
        raise ValueError(
            f"cannot read TIFF file {str(path)!r} as one multi-band image: it has axes {axes!r} of shape "
            f"{array.shape}; expected height, width and at most one band axis"
        )
    order = [axes.index(a) for a in (*bands, *_SPATIAL_AXES)]
    array = np.transpose(array, order)
    alpha = bands == ["S"] and bool(extrasamples) and int(extrasamples[-1]) in ALPHA_EXTRASAMPLES
    return TiffBands(array if bands else array[None], alpha)
