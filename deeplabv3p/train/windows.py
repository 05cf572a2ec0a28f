"""Where the training windows of large rasters lie (`deeplabv3p.train.raster_data`): a regular grid that covers every
pixel of every raster once (validation, evaluation), and random windows weighted by area (training), as torchgeo's
``GridGeoSampler`` and ``RandomGeoSampler`` place them, in pixels of each raster rather than map units.

Pure geometry on ``(height, width)`` sizes: nothing here opens a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np

__all__ = ["RandomWindows", "Window", "grid_windows"]


class Window(NamedTuple):
    """Rows ``y:y + height`` and columns ``x:x + width`` of raster number ``raster``."""

    raster: int
    y: int
    x: int
    height: int
    width: int

    def describe(self) -> str:
        return f"rows {self.y}:{self.y + self.height}, columns {self.x}:{self.x + self.width}"


def _cuts(length: int, size: int) -> list[int]:
    """Where the windows along one axis start and end: as few windows of at most `size` pixels as cover `length`,
    of equal size to a pixel (``[0, 33, 67, 100]`` for 100 by 40), so that no edge window is a thin sliver the
    network cannot take."""
    count = max(1, math.ceil(length / size))
    return [round(i * length / count) for i in range(count + 1)]


def grid_windows(sizes: Sequence[tuple[int, int]], size: tuple[int, int]) -> list[Window]:
    """Every raster of `sizes` tiled row by row by windows of at most `size` ``(h, w)``, side by side, so that each
    pixel lies in exactly one window (evaluation counts it once); the windows of a raster share its size out evenly
    (`_cuts`). No overlap is needed: each window is predicted with the model's own test settings (whole or slide)."""
    windows = []
    for raster, (height, width) in enumerate(sizes):
        rows, cols = _cuts(height, size[0]), _cuts(width, size[1])
        for y1, y2 in pairwise(rows):
            for x1, x2 in pairwise(cols):
                windows.append(Window(raster, y1, x1, y2 - y1, x2 - x1))
    return windows


class RandomWindows:
    """Random windows of `size` ``(h, w)`` over rasters of `sizes`: a raster chosen with probability proportional to
    its area, then a position uniform over the places a window fits (a raster smaller than the window gives the
    whole raster). `draw` takes the generator, so that the caller owns the seed."""

    def __init__(self, sizes: Sequence[tuple[int, int]], size: tuple[int, int]) -> None:
        if not sizes:
            raise ValueError("no rasters to draw windows from")
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self.size = size
        areas = np.array([h * w for h, w in self.sizes], dtype=np.float64)
        if areas.sum() <= 0:
            raise ValueError(f"every raster is empty (sizes {self.sizes})")
        self.weights = areas / areas.sum()

    def draw(self, rng: np.random.Generator) -> Window:
        raster = int(rng.choice(len(self.sizes), p=self.weights))
        height, width = self.sizes[raster]
        h, w = min(self.size[0], height), min(self.size[1], width)
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        return Window(raster, y, x, h, w)
