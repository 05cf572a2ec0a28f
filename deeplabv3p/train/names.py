"""The names the command line offers as choices, torch-free so that ``--help`` answers without importing torch:
the dataset layouts `SegmentationDataset` opens (`deeplabv3p.train.layouts.LAYOUTS` holds one per name, in this
order) and the downloads ``prepare`` converts (`deeplabv3p.train.prepare.CONVERTERS`)."""

from __future__ import annotations

from ..pretrained.zoo import DATASETS

__all__ = ["FOLDER", "LAYOUT_NAMES", "MMSEG", "PREPARE_NAMES", "RASTERS", "ZOO_LAYOUT_NAMES"]

FOLDER = "folder"
MMSEG = "mmseg"
RASTERS = "rasters"
ZOO_LAYOUT_NAMES: tuple[str, ...] = tuple(DATASETS)  # every zoo dataset is read in its official layout
LAYOUT_NAMES: tuple[str, ...] = (FOLDER, RASTERS, MMSEG, *ZOO_LAYOUT_NAMES)
PREPARE_NAMES: tuple[str, ...] = ("potsdam", "vaihingen", "isaid", "loveda", "cityscapes")
