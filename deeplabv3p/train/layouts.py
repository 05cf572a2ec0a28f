"""Every dataset layout `SegmentationDataset` opens, in one table: the generic folder tree, mmseg's converted tree
and the zoo's benchmark datasets as they unpack (or as mmseg's converters write them), one small record each.

- ``folder``: ``ROOT/images/SPLIT/NAME.EXT`` + ``ROOT/masks/SPLIT/NAME.png`` (subfolders allowed, any extension
  predict reads), classes in ``ROOT/classes.json``;
- ``rasters``: the same tree of large rasters (``images/SPLIT/NAME.tif`` + ``masks/SPLIT/NAME.tif`` on the same
  grid), read window by window (`deeplabv3p.train.raster_data`);
- ``mmseg``: any ``ROOT/img_dir/SPLIT`` + ``ROOT/ann_dir/SPLIT`` tree (one image suffix, found or given);
- the zoo's layouts (``cityscapes``, ``ade20k``, ...): each split one or more *parts*, scanned folders or split
  lists paired as mmsegmentation 1.x's ``BaseSegDataset`` pairs them (`deeplabv3p.train.pairing`).

A split may be several parts in a row (VOC + SBD ``train`` is VOC's ``train.txt`` followed by SBD's ``aug.txt``).
A part may offer label alternatives (Cityscapes: ``_labelTrainIds.png`` when every image has one, else
``_labelIds.png`` mapped to the 19 train ids with the official table). A zoo layout's classes, palette and
``reduce_zero_label`` come from the zoo (`deeplabv3p.pretrained.zoo.DATASETS`); the official split sizes are here,
to warn when a copy is incomplete. ``LAYOUTS[name].resolve(root, split)`` turns a root and split into the checked
pairs and label rules; `choose_layout` is the ``layout="auto"`` rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..fields import absent, path_kind
from ..inference.images import IMAGE_EXTENSIONS
from ..pretrained.zoo import DATASETS, DatasetInfo
from .classes import CLASSES_FILE
from .names import FOLDER, LAYOUT_NAMES, MMSEG, RASTERS
from .pairing import LabelSource, Part, describe_folder, listing, pair_part, subfolders

__all__ = [
    "AUTO",
    "CITYSCAPES_ID_TO_TRAIN_ID",
    "FOLDER",
    "IGNORE",
    "LAYOUTS",
    "MMSEG",
    "RASTERS",
    "Layout",
    "ResolvedLayout",
    "choose_layout",
    "label_lut",
    "zoo_dataset",
]

AUTO = "auto"  # not a layout: `choose_layout` picks one
# What the rasters layout lists as images: GeoTIFF and the formats GDAL reads that hold large orthophotos.
RASTER_IMAGE_EXTENSIONS = (".tif", ".tiff", ".vrt", ".jp2")
IGNORE = 255

# cityscapesscripts' labels.py: labelId -> trainId for the 19 evaluated classes; every other id is ignored.
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_NUM_IDS = 34  # labelIds 0..33 (the license plate, id -1, is never drawn into the PNGs)


def label_lut(mapping: Mapping[int, int], default: int | None = None) -> np.ndarray:
    """A 256-entry lookup table: ``mapping`` where given, `default` (or the value itself when None) elsewhere."""
    lut = np.arange(256, dtype=np.int64) if default is None else np.full(256, default, dtype=np.int64)
    for raw, label in mapping.items():
        lut[raw] = label
    return lut


@dataclass
class ResolvedLayout:
    """A layout applied to a root and split: the pairs, where they were found and the label rules."""

    layout: str
    dataset: str | None
    root: Path
    split: str
    pairs: list[tuple[Path, Path]]
    label_sources: list[LabelSource]
    official_count: int | None = None
    prepare: str = ""

    @property
    def label_map(self) -> np.ndarray | None:
        """The lookup table of the (single) label source, or None when labels are stored as the model's indices."""
        source = self.label_sources[0]
        if source.label_map is None:
            return None
        return label_lut(source.label_map, source.map_default)


class Layout(Protocol):
    """Where a split's images and labels are: ``name`` (the ``layout=`` value), the zoo ``dataset`` whose classes
    and label rules it holds (None: the caller's or ``classes.json``), what it looks like (``expected``, for error
    messages), and ``resolve(root, split)``, which finds and pairs the files or says what is missing."""

    @property
    def name(self) -> str: ...

    @property
    def dataset(self) -> str | None: ...

    @property
    def expected(self) -> str: ...

    def resolve(self, root: Path, split: str) -> ResolvedLayout: ...


@dataclass(frozen=True)
class FolderLayout:
    """The generic tree: ``images/SPLIT`` + ``masks/SPLIT`` (masks share the image's relative path and stem), of
    images of `extensions` and masks ``NAME + mask_suffix``; the rasters layout is the same tree of rasters."""

    name: str = FOLDER
    dataset: str | None = None
    expected: str = f"images/SPLIT/NAME.EXT, masks/SPLIT/NAME.png and {CLASSES_FILE}"
    mask_suffix: str = ".png"
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS

    def resolve(self, root: Path, split: str) -> ResolvedLayout:
        images_dir, masks_dir = root / "images" / split, root / "masks" / split
        if not images_dir.is_dir():
            found = subfolders(root / "images")
            hint = f"splits found under {str(root / 'images')!r}: {found}" if found else f"{str(root)!r} has no images/"
            raise FileNotFoundError(f"image folder {str(images_dir)!r} {absent(images_dir, 'a folder')} ({hint})")
        images = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)
        if not images:
            kinds = "/".join(s[1:] for s in self.extensions)
            raise ValueError(f"split {split!r} is empty: no {kinds} images in {str(images_dir)!r}")
        stems: dict[Path, Path] = {}
        for image in images:
            rel = image.relative_to(images_dir).with_suffix("")
            if rel in stems:
                raise ValueError(f"two images share the name {str(rel)!r}: {str(stems[rel])!r} and {str(image)!r}")
            stems[rel] = image
        pairs = [(image, masks_dir / (str(rel) + self.mask_suffix)) for rel, image in stems.items()]
        missing = [str(mask) for _, mask in pairs if not mask.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(pairs)} images in {str(images_dir)!r} have no mask (expected "
                f"NAME{self.mask_suffix} under {str(masks_dir)!r} with the image's name): {listing(missing)}"
            )
        return ResolvedLayout(self.name, None, root, split, pairs, [LabelSource(self.mask_suffix)])


@dataclass(frozen=True)
class MmsegLayout:
    """Any tree prepared for mmseg: ``img_dir/SPLIT`` + ``ann_dir/SPLIT`` (scan mode). `img_suffix` None takes the one
    image suffix the folder uses (``.png``, ``.jpg``, ...)."""

    name: str = MMSEG
    dataset: str | None = None
    expected: str = "img_dir/SPLIT/NAME.EXT and ann_dir/SPLIT/NAME.png"
    img_suffix: str | None = None
    seg_suffix: str = ".png"

    def resolve(self, root: Path, split: str) -> ResolvedLayout:
        where = f"mmseg layout split {split!r}"
        img_dir = root / "img_dir" / split
        if not img_dir.is_dir():
            found = subfolders(root / "img_dir")
            hint = f"splits under img_dir/: {found}" if found else f"{str(root)!r} holds {describe_folder(root)}"
            raise FileNotFoundError(
                f"{where}: expected img_dir/{split}/ and ann_dir/{split}/ under {str(root)!r} ({hint})"
            )
        img_suffix = self.img_suffix
        if img_suffix is None:
            suffixes = sorted({p.suffix for p in img_dir.rglob("*") if p.is_file() and not p.name.startswith(".")})
            images = [s for s in suffixes if s.lower() in IMAGE_EXTENSIONS]
            if len(images) != 1:
                raise ValueError(
                    f"{where}: cannot tell the image suffix of {str(img_dir)!r} (found {suffixes or 'no files'}); "
                    "pass img_suffix= (e.g. '.jpg')"
                )
            img_suffix = images[0]
        part = Part(f"img_dir/{split}", f"ann_dir/{split}", img_suffix, _png(self.seg_suffix))
        pairs, source = pair_part(root, part, where)
        return ResolvedLayout(self.name, self.dataset, root, split, pairs, [source])


@dataclass(frozen=True)
class ZooLayout:
    """A zoo dataset's official layout (its ``name`` is the zoo dataset's). ``roots`` are the places under the
    given root that may hold it (``""`` is the root itself); ``counts`` are the official split sizes."""

    name: str
    expected: str
    splits: Mapping[str, tuple[Part, ...]]
    counts: Mapping[str, int] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    roots: tuple[str, ...] = ("",)
    marker: str = ""
    prepare: str = ""

    @property
    def dataset(self) -> str:
        return self.name

    def resolve(self, root: Path, split: str) -> ResolvedLayout:
        base = _find_root(self, root)
        key = self.aliases.get(split, split)
        if key not in self.splits:
            known = sorted({*self.splits, *self.aliases})
            raise ValueError(f"the {self.name} layout has no split {split!r}; its splits are {known}")
        pairs: list[tuple[Path, Path]] = []
        sources: list[LabelSource] = []
        for part in self.splits[key]:
            part_pairs, source = pair_part(base, part, f"{self.name} split {split!r}")
            pairs += part_pairs
            sources.append(source)
        if len({(s.label_map and tuple(sorted(s.label_map.items())), s.map_default) for s in sources}) > 1:
            raise ValueError(f"{self.name} split {split!r}: its parts use different label encodings")
        return ResolvedLayout(self.name, self.name, base, key, pairs, sources, self.counts.get(key), self.prepare)


def _png(suffix: str = ".png", **kwargs: object) -> tuple[LabelSource, ...]:
    return (LabelSource(suffix, **kwargs),)  # type: ignore[arg-type]


def _img_ann(name: str, splits: Sequence[str], img_suffix: str, seg_suffix: str, **kwargs: object) -> ZooLayout:
    """A zoo layout in mmseg's converted ``img_dir/SPLIT`` + ``ann_dir/SPLIT`` form."""
    parts = {s: (Part(f"img_dir/{s}", f"ann_dir/{s}", img_suffix, _png(seg_suffix)),) for s in splits}
    expected = f"img_dir/{{{','.join(splits)}}}/NAME{img_suffix} and ann_dir/{{{','.join(splits)}}}/NAME{seg_suffix}"
    return ZooLayout(name, expected, parts, marker="img_dir", **kwargs)  # type: ignore[arg-type]


_CITYSCAPES_SOURCES = (
    LabelSource(
        "_gtFine_labelTrainIds.png",
        raw_values=frozenset([*range(19), IGNORE]),
        mistake="these look like labelIds saved as _labelTrainIds.png (the classic mix-up): delete the "
        "_labelTrainIds.png files (the reader maps _labelIds.png on the fly) or write them again with "
        "`deeplabv3p prepare cityscapes ROOT`",
    ),
    LabelSource(
        "_gtFine_labelIds.png",
        label_map=CITYSCAPES_ID_TO_TRAIN_ID,
        map_default=IGNORE,
        raw_values=frozenset(range(CITYSCAPES_NUM_IDS)),
        mistake="labelIds run from 0 to 33, so this file holds something else (trainIds saved as _labelIds.png?); "
        "use the _gtFine_labelIds.png files of the official gtFine_trainvaltest.zip",
    ),
)

_VOC_LISTS = "ImageSets/Segmentation"
_CONTEXT_LISTS = "ImageSets/SegmentationContext"


def _context(name: str) -> ZooLayout:
    parts = {
        s: (Part("JPEGImages", "SegmentationClassContext", ".jpg", _png(), f"{_CONTEXT_LISTS}/{s}.txt"),)
        for s in ("train", "val")
    }
    return ZooLayout(
        name,
        "JPEGImages/NAME.jpg, SegmentationClassContext/NAME.png (label indices 0..59, written by mmseg's "
        f"pascal_context converter) and {_CONTEXT_LISTS}/{{train,val}}.txt",
        parts, counts={"train": 4996, "val": 5104}, roots=("", "VOC2010", "VOCdevkit/VOC2010"),
        marker="SegmentationClassContext",
    )  # fmt: skip


_ZOO_LAYOUTS: tuple[ZooLayout, ...] = (
    ZooLayout(
        "cityscapes",
        "leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.png with gtFine/SPLIT/CITY/NAME_gtFine_labelIds.png (or "
        "NAME_gtFine_labelTrainIds.png), as leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip unpack",
        {
            s: (Part(f"leftImg8bit/{s}", f"gtFine/{s}", "_leftImg8bit.png", _CITYSCAPES_SOURCES),)
            for s in ("train", "val", "test")
        },
        counts={"train": 2975, "val": 500, "test": 1525},
        marker="leftImg8bit",
        prepare="`deeplabv3p prepare cityscapes ROOT` writes the _labelTrainIds.png files (optional)",
    ),
    ZooLayout(
        "ade20k",
        "images/{training,validation}/ADE_*.jpg and annotations/{training,validation}/ADE_*.png, as "
        "ADEChallengeData2016.zip unpacks",
        {s: (Part(f"images/{s}", f"annotations/{s}", ".jpg", _png()),) for s in ("training", "validation")},
        counts={"training": 20210, "validation": 2000},
        aliases={"train": "training", "val": "validation"},
        roots=("", "ADEChallengeData2016", "ade/ADEChallengeData2016"),
        marker="annotations",
    ),
    ZooLayout(
        "voc12aug",
        "JPEGImages/NAME.jpg, SegmentationClass/NAME.png with ImageSets/Segmentation/{train,val}.txt (VOC 2012), "
        "plus SegmentationClassAug/NAME.png and ImageSets/Segmentation/aug.txt written by mmseg's voc_aug "
        "converter from SBD",
        {
            "train": (
                Part("JPEGImages", "SegmentationClass", ".jpg", _png(), f"{_VOC_LISTS}/train.txt"),
                Part("JPEGImages", "SegmentationClassAug", ".jpg", _png(), f"{_VOC_LISTS}/aug.txt"),
            ),
            "val": (Part("JPEGImages", "SegmentationClass", ".jpg", _png(), f"{_VOC_LISTS}/val.txt"),),
        },
        counts={"train": 10582, "val": 1449},
        roots=("", "VOC2012", "VOCdevkit/VOC2012"),
        marker="JPEGImages",
        prepare="SegmentationClassAug/ and aug.txt come from SBD's benchmark.tgz through mmseg's "
        "tools/dataset_converters/voc_aug.py",
    ),
    _context("pascal_context"),
    _context("pascal_context_59"),
    _img_ann(
        "loveda",
        ("train", "val"),
        ".png",
        ".png",
        counts={"train": 2522, "val": 1669},
        roots=("", "loveDA"),
        prepare="`deeplabv3p prepare loveda RAW OUT` (RAW holds Train.zip, Val.zip, Test.zip)",
    ),
    _img_ann(
        "potsdam",
        ("train", "val"),
        ".png",
        ".png",
        counts={"train": 3456, "val": 2016},
        prepare="`deeplabv3p prepare potsdam RAW OUT` (RAW holds 2_Ortho_RGB.zip and 5_Labels_all_noBoundary.zip)",
    ),
    _img_ann(
        "vaihingen",
        ("train", "val"),
        ".png",
        ".png",
        counts={"train": 344, "val": 398},
        prepare="`deeplabv3p prepare vaihingen RAW OUT` (RAW holds ISPRS_semantic_labeling_Vaihingen.zip and "
        "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip)",
    ),
    _img_ann(
        "isaid",
        ("train", "val"),
        ".png",
        "_instance_color_RGB.png",
        counts={"train": 33978, "val": 11644},
        roots=("", "iSAID"),
        prepare="`deeplabv3p prepare isaid RAW OUT` (RAW holds train/, val/ with images/*.zip and "
        "Semantic_masks/*.zip, as downloaded)",
    ),
    ZooLayout(
        "mapillary_v1_65",
        "{training,validation}/images/ID.jpg with {training,validation}/v1.2/labels/ID.png (v1.2 palette PNGs), "
        "as the Mapillary Vistas zip unpacks",
        {
            s: (Part(f"{s}/images", f"{s}/v1.2/labels", ".jpg", _png(label_map={65: IGNORE})),)
            for s in ("training", "validation")
        },
        counts={"training": 18000, "validation": 2000},
        aliases={"train": "training", "val": "validation"},
        roots=("", "mapillary"),
        marker="training",
    ),
)

_RASTER_LAYOUT = FolderLayout(
    RASTERS,
    expected=f"images/SPLIT/NAME.tif (any raster GDAL reads: .tif, .vrt, .jp2), masks/SPLIT/NAME.tif (class ids on "
    f"the image's grid) and {CLASSES_FILE}",
    mask_suffix=".tif",
    extensions=RASTER_IMAGE_EXTENSIONS,
)
_ALL: tuple[Layout, ...] = (FolderLayout(), _RASTER_LAYOUT, MmsegLayout(), *_ZOO_LAYOUTS)
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in _ALL}
if tuple(LAYOUTS) != LAYOUT_NAMES:  # the command line offers LAYOUT_NAMES without importing this module
    raise RuntimeError(f"deeplabv3p.train.names.LAYOUT_NAMES {LAYOUT_NAMES} differs from the layouts {tuple(LAYOUTS)}")


def _find_root(layout: ZooLayout, root: Path) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"{layout.name} dataset folder {str(root)!r} {absent(root, 'a folder')}")
    for sub in layout.roots:
        candidate = root / sub if sub else root
        if candidate.is_dir() and (not layout.marker or (candidate / layout.marker).is_dir()):
            return candidate
    places = " or ".join(repr(str(root / s)) if s else repr(str(root)) for s in layout.roots)
    raise FileNotFoundError(
        f"{str(root)!r} is not a {layout.name} dataset folder: expected {layout.expected} in {places}, found "
        f"{describe_folder(root)}." + (f" To make it: {layout.prepare}." if layout.prepare else "")
    )


def zoo_dataset(name: str) -> DatasetInfo:
    """The zoo's facts about a dataset: ``classes``, ``palette``, ``reduce_zero_label``, ``display_name``."""
    if name not in DATASETS:
        raise ValueError(f"unknown zoo dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def choose_layout(
    root: Path,
    layout: str = AUTO,
    dataset: str | None = None,
    *,
    img_suffix: str | None = None,
    seg_suffix: str | None = None,
) -> Layout:
    """The layout to read `root` with, checked before any file is listed.

    `layout` is a name of `LAYOUTS`, or ``"auto"``: the folder layout when `root` holds ``classes.json``, else the
    official layout of the zoo `dataset`, else the folder layout. An ``"mmseg"`` tree takes `dataset`'s classes and
    label rules (when given) and `img_suffix` / `seg_suffix`, which no other layout has. Raises ValueError for an
    unknown name or an option the layout has no use for, and for a `root` that is not a folder.
    """
    if layout != AUTO and layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; known: {sorted(LAYOUTS)} or {AUTO!r}")
    if dataset is not None:
        zoo_dataset(dataset)
    if layout == AUTO:
        layout = dataset if dataset is not None and not (root / CLASSES_FILE).is_file() else FOLDER
    chosen = LAYOUTS[layout]
    suffixes = {k: v for k, v in (("img_suffix", img_suffix), ("seg_suffix", seg_suffix)) if v is not None}
    for key, value in suffixes.items():
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"{key}={value!r}: pass the ending of the file names, such as '.jpg' or '_labelTrainIds.png' (an "
                "empty one would make every file an image or a label), or leave it out to find it"
            )
    if isinstance(chosen, MmsegLayout):
        chosen = dataclasses.replace(chosen, dataset=dataset, **suffixes)
    elif suffixes:
        raise ValueError(f"{sorted(suffixes)} apply to the {MMSEG!r} layout only, not to the {layout!r} layout")
    if (kind := path_kind(root)) not in ("nothing", "a folder"):
        raise ValueError(f"root {str(root)!r} is {kind}; pass the dataset folder (the one holding {chosen.expected})")
    if not root.is_dir():
        raise FileNotFoundError(f"{layout} dataset folder {str(root)!r} does not exist")
    return chosen
