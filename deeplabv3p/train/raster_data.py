"""Training and evaluation on large rasters without cutting patches first (torchgeo's way): pairs of image and label
rasters on the same grid, read window by window, so that no raster is ever read whole.

``SegmentationDataset(root, split, layout="rasters")`` holds a `RasterPairs`. Its samples are windows:

- ``"random"`` sampling (the training split's default): each ``dataset[i]`` draws a window of ``window`` pixels
  from torch's random generator, which `fit` seeds per sample from (seed, epoch, position), so the windows are
  reproducible and new every epoch. A raster is chosen with probability proportional to its area; a window whose
  every pixel is nodata or ``ignore_index`` is drawn again. An epoch is ``samples_per_epoch`` windows (default:
  as many as the grid has, so an epoch sees about every pixel once).
- ``"grid"`` sampling (any other split's default): windows side by side covering every pixel exactly once, for
  validation and `evaluate`. A ``margin`` of context widens each window's image by that many pixels on every side
  (within the raster), its labels there ``ignore_index``: the network sees the neighbourhood, as in slide
  inference over the whole raster, and each pixel is still counted once.

Images are read by the raster rule of `deeplabv3p.inference.rasters` (the in-memory image rule's bands and dtypes);
labels are the first band of a uint8/uint16 raster of class ids. A pixel that is nodata in the image or the labels
becomes ``ignore_index``. The files are opened lazily in each process (a DataLoader worker opens its own GDAL
handles: they cannot be shared across processes), at most `OPEN_PAIRS` pairs are held open at once, and GDAL's
block cache is bounded as prediction bounds it (`deeplabv3p.inference.rasters.gdal_env`).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.rasters import RasterGrid, RasterSource, gdal_env, require_rasterio
from .windows import RandomWindows, Window, grid_windows

__all__ = ["GRID", "RANDOM", "SAMPLINGS", "RasterPairs"]

RANDOM = "random"
GRID = "grid"
SAMPLINGS = (RANDOM, GRID)
MAX_DRAWS = 100  # random windows tried for one sample before the labels are declared empty
OPEN_PAIRS = 8  # raster pairs a process keeps open
_LABEL_DTYPES = ("uint8", "uint16")


def same_grid(a: RasterGrid, b: RasterGrid) -> bool:
    """Whether two rasters' pixels lie on each other: the same size, CRS and transform (to float rounding)."""
    return (
        (a.height, a.width) == (b.height, b.width)
        and a.crs == b.crs
        and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a.transform, b.transform, strict=True))
    )


def _open_labels(path: Path) -> RasterSource:
    """A label raster: one band of uint8/uint16 class ids."""
    try:
        source = RasterSource(path, in_chans=1, bands=(1,))
    except TypeError:
        source = None
    if source is None or source.dtype not in _LABEL_DTYPES:
        held = f"{source.dtype} values" if source is not None else "values of another type"
        if source is not None:
            source.close()
        raise TypeError(
            f"label raster {str(path)!r} holds {held}; labels must be class ids stored as uint8 or uint16 (write "
            "them with gdal_translate -ot Byte, without -scale)"
        )
    if source.band_count != 1:
        count = source.band_count
        source.close()
        raise ValueError(
            f"label raster {str(path)!r} has {count} bands; a label raster holds one band of class ids (a colour "
            "label raster must be converted to class ids first)"
        )
    return source


def check_pair(image: Path, labels: Path, in_chans: int, bands: tuple[int, ...] | None) -> tuple[int, int]:
    """Open both rasters' headers and check they can be read together (the image's `bands` for a model of
    `in_chans`, the labels on its grid); returns their ``(height, width)``."""
    with RasterSource(image, in_chans, bands) as img, _open_labels(labels) as lbl:
        if not same_grid(img.grid, lbl.grid):
            raise ValueError(
                f"image raster {str(image)!r} and label raster {str(labels)!r} are not on the same grid: the image is "
                f"{img.grid.describe()}, the labels are {lbl.grid.describe()}; resample the labels onto the "
                "image's grid (gdalwarp with the image's -te/-tr/-t_srs and -r near)"
            )
        return img.height, img.width


class RasterPairs:
    """Image/label raster `pairs` (checked when built: readable, same grid, integer labels) read as windows of
    `window` ``(h, w)`` by `sampling` (see the module docstring), the images' `bands` (1-based; None: the raster
    rule's default) for a model of `in_chans`. `to_labels` turns stored label values into the
    model's (the dataset's ``reduce_zero_label`` / ``label_map``) and `check_labels` raises for labels outside the
    classes; both run after nodata became `ignore_index`."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        in_chans: int,
        window: tuple[int, int],
        sampling: str,
        samples_per_epoch: int | None,
        margin: int,
        bands: tuple[int, ...] | None,
        ignore_index: int,
        to_labels: Callable[[np.ndarray], np.ndarray],
        check_labels: Callable[[np.ndarray, str], None],
    ) -> None:
        require_rasterio("training on rasters (layout='rasters')")
        self.pairs = list(pairs)
        self.in_chans = in_chans
        self.window = window
        self.sampling = sampling
        self.margin = margin
        self.bands = bands
        self.ignore_index = ignore_index
        self.to_labels = to_labels
        self.check_labels = check_labels
        self.sizes = [check_pair(image, labels, in_chans, bands) for image, labels in self.pairs]
        self.grid = grid_windows(self.sizes, window)
        self.random = RandomWindows(self.sizes, window) if sampling == RANDOM else None
        self.length = len(self.grid) if samples_per_epoch is None or sampling == GRID else samples_per_epoch
        self._open: OrderedDict[int, tuple[RasterSource, RasterSource]] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # GDAL handles stay in the process that opened them
        return state

    def describe(self) -> str:
        h, w = self.window
        margin = f" (+{self.margin} px of context)" if self.margin else ""
        return f"{len(self.pairs)} raster pairs, {self.sampling} windows of {h}x{w}{margin}"

    def _sources(self, raster: int) -> tuple[RasterSource, RasterSource]:
        """Raster pair `raster`, opened in this process (a forked worker opens its own)."""
        if os.getpid() != self._pid:
            self._open, self._pid = OrderedDict(), os.getpid()  # the parent's handles are the parent's
        if raster in self._open:
            self._open.move_to_end(raster)
            return self._open[raster]
        image, labels = self.pairs[raster]
        opened = (RasterSource(image, self.in_chans, self.bands), _open_labels(labels))
        self._open[raster] = opened
        while len(self._open) > OPEN_PAIRS:
            for source in self._open.popitem(last=False)[1]:
                source.close()
        return opened

    def widened(self, window: Window) -> Window:
        """`window` with `margin` pixels of context on each side, within its raster."""
        if not self.margin:
            return window
        height, width = self.sizes[window.raster]
        y1, x1 = max(0, window.y - self.margin), max(0, window.x - self.margin)
        y2 = min(height, window.y + window.height + self.margin)
        x2 = min(width, window.x + window.width + self.margin)
        return Window(window.raster, y1, x1, y2 - y1, x2 - x1)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """`window` and its margin as ``(image (h, w, in_chans) in the stored dtype, labels (h, w) int64)``: the
        image as an image file is read before scaling; nodata pixels of either raster and the margin's labelled
        `ignore_index`."""
        with gdal_env(self.pairs[window.raster][0]):  # GDAL's block cache bounded in every reading process
            return self._read(window)

    def _read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        core, window = window, self.widened(window)
        image_src, label_src = self._sources(window.raster)
        y1, y2, x1, x2 = window.y, window.y + window.height, window.x, window.x + window.width
        stored = image_src.read_stored(y1, y2, x1, x2)
        raw_band = label_src.read_raw(y1, y2, x1, x2)
        masks = label_src.band_masks(raw_band, y1, y2, x1, x2)
        raw = raw_band[0].astype(np.int64)
        valid = stored.valid
        if masks is not None:
            valid = masks[0] if valid is None else valid & masks[0]
        if window != core:
            inside = np.zeros(raw.shape, dtype=bool)
            inside[core.y - y1 : core.y - y1 + core.height, core.x - x1 : core.x - x1 + core.width] = True
            valid = inside if valid is None else valid & inside
        if valid is not None:
            raw[~valid] = self.ignore_index
        labels = self.to_labels(raw)
        if valid is not None:
            labels[~valid] = self.ignore_index
        self.check_labels(labels, f"{self.pairs[window.raster][1]} ({window.describe()})")
        return np.ascontiguousarray(stored.pixels.permute(1, 2, 0).numpy()), labels

    def window_at(self, index: int) -> Window:
        """The region read for grid window `index` (its margin included), or a random window's nominal place:
        raster and size only."""
        if self.sampling == GRID:
            return self.widened(self.grid[index])
        largest = (max(h for h, _ in self.sizes), max(w for _, w in self.sizes))
        return Window(0, 0, 0, min(self.window[0], largest[0]), min(self.window[1], largest[1]))

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index`: its grid window, or a random window drawn from torch's generator (see the module
        docstring) that holds at least one labelled pixel."""
        if index < 0 or index >= self.length:
            raise IndexError(f"sample {index} of a raster dataset of {self.length} windows")
        if self.random is None:
            return self.read(self.grid[index])
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        for _ in range(MAX_DRAWS):
            image, labels = self.read(self.random.draw(rng))
            if (labels != self.ignore_index).any():
                return image, labels
        files = [str(labels) for _, labels in self.pairs][:5]
        raise ValueError(
            f"{MAX_DRAWS} random {self.window[0]}x{self.window[1]} windows held no labelled pixel: the label rasters "
            f"{files} are nodata or ignore_index {self.ignore_index} wherever they were sampled (or the images are "
            "nodata there); check the rasters' nodata values"
        )

    def close(self) -> None:
        """Close the rasters this process holds open."""
        while self._open:
            for source in self._open.popitem()[1]:
                source.close()
