"""Which bands of a multi-band file a model reads: one rule for the streamed raster path
(`deeplabv3p.inference.rasters`, `predict_raster`) and the in-memory one (`deeplabv3p.inference.images`: TIFF files
given to `predict` or to folder prediction).

- Bands the caller chooses (``bands=(4, 3, 2)``, ``--bands 4,3,2``; 1-based, as GDAL counts) are read, in that order.
- Else the bands the weights were trained on (``pretrained_cfg.bands``, recorded by training on rasters).
- Else the rule for the model's ``in_chans``: every band, a declared alpha dropped and gray repeated for RGB models.

How many bands fit a model of ``in_chans`` is `deeplabv3p.fields.band_counts`, which `PretrainedCfg` checks too. A
file that lacks a band to read is an error naming the file, the bands and how to choose others (`BandChoice.missing`).
Bands apply to TIFF files and rasters; other image files, PIL images and arrays are read as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..fields import check_bands

if TYPE_CHECKING:
    from ..pretrained.config import PretrainedCfg

CHOOSE_HINT = "bands=(...) (--bands B,B,B)"


@dataclass(frozen=True)
class BandChoice:
    """The 1-based bands to read, in order, and whether they are the weights' trained bands (``trained``: the
    caller chose none) rather than the caller's."""

    bands: tuple[int, ...]
    trained: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", check_bands("bands", self.bands))

    def missing(self, count: int) -> str | None:
        """Why a file of `count` bands cannot give these bands (worded without the file's name, which the caller
        puts first), or None when it has them all."""
        absent = [b for b in self.bands if b > count]
        if not absent:
            return None
        problem = (
            f"reading bands {self.bands} asks for band {absent[0]} but the raster has {count} band(s) (numbered 1 "
            f"to {count}, as GDAL counts)"
        )
        if self.trained:
            return (
                f"{problem}; the weights were trained on bands {self.bands} (pretrained_cfg.bands), which are read "
                f"unless others are chosen: choose others with {CHOOSE_HINT}"
            )
        return f"{problem}: choose bands it has with {CHOOSE_HINT}"


def choose_bands(chosen: Sequence[int] | None, weights: PretrainedCfg | None) -> BandChoice | None:
    """The bands a model with `weights` reads from a raster or TIFF: `chosen` (the caller's), else the weights'
    trained bands (``weights.bands``), else None (the rule for the model's ``in_chans``)."""
    if chosen is not None:
        return BandChoice(check_bands("bands", chosen))
    trained = None if weights is None else weights.bands
    return None if trained is None else BandChoice(trained, trained=True)
