"""``prepare``: the official downloads that need converting before use, into the layouts mmseg's converters write.

- ``potsdam`` / ``vaihingen``: the ISPRS tiles (zipped TIFFs) cut into 512x512 patches, colour labels turned into
  indices (0 = boundary/unknown, 1..6 = classes; pixel colours matched by mmseg's key 4R + 3G + 2B), the official
  train/val tile lists; ``img_dir/{train,val}`` + ``ann_dir/{train,val}``.
- ``isaid``: the DOTA images and iSAID semantic masks cut into 896x896 patches every 512 pixels (test images copied
  as they are).
- ``loveda``: ``Train.zip`` / ``Val.zip`` / ``Test.zip`` flattened into ``img_dir`` / ``ann_dir``.
- ``cityscapes`` (optional, the reader maps labelIds on the fly): ``*_gtFine_labelTrainIds.png`` written beside each
  ``*_gtFine_labelIds.png`` with the official table.

Every converter first lists its inputs and checks that each image has its label (and the reverse), so a bad
download fails before anything is written. Files are read from the zips one at a time (nothing is extracted
whole), every output is written to a temporary name and renamed, and a run that stops can be started again: the
outputs that exist are complete and are skipped. Where mmseg's scripts differ from this, it is on purpose and said
at the function.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import atomic_path, remove_stale
from ..fields import absent
from .layouts import CITYSCAPES_ID_TO_TRAIN_ID, IGNORE, label_lut
from .names import PREPARE_NAMES

__all__ = ["CONVERTERS", "PREPARE_NAMES", "PrepareReport", "isaid_windows", "isprs_boxes", "prepare"]

# The official ISPRS splits (the tiles mmseg's converters put in train; val lists the rest).
POTSDAM_SPLITS = {
    "train": [f"{i}_{j}" for i, j in ((2, 10), (2, 11), (2, 12), (3, 10), (3, 11), (3, 12), (4, 10), (4, 11), (4, 12),
                                      (5, 10), (5, 11), (5, 12), (6, 10), (6, 11), (6, 12), (6, 7), (6, 8), (6, 9),
                                      (7, 10), (7, 11), (7, 12), (7, 7), (7, 8), (7, 9))],
    "val": [f"{i}_{j}" for i, j in ((5, 15), (6, 15), (6, 13), (3, 13), (4, 14), (6, 14), (5, 14), (2, 13), (4, 15),
                                    (2, 14), (5, 13), (4, 13), (3, 14), (7, 13))],
}  # fmt: skip
VAIHINGEN_SPLITS = {
    "train": [f"area{k}" for k in (1, 11, 13, 15, 17, 21, 23, 26, 28, 3, 30, 32, 34, 37, 5, 7)],
    "val": [f"area{k}" for k in (6, 24, 35, 16, 14, 22, 10, 4, 2, 20, 8, 31, 33, 27, 38, 12, 29)],
}
# Raw ISPRS label colours (RGB) by raw index; 0 is boundary/unknown (ignored after reduce_zero_label).
ISPRS_COLOURS = ((0, 0, 0), (255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
ISAID_COLOURS = (
    (0, 0, 0), (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127), (0, 63, 191), (0, 63, 255), (0, 127, 63),
    (0, 127, 127), (0, 0, 127), (0, 0, 191), (0, 0, 255), (0, 191, 127), (0, 127, 191), (0, 127, 255), (0, 100, 155),
)  # fmt: skip
ISPRS_PATCH = 512
ISAID_PATCH, ISAID_STEP = 896, 512


@dataclass
class PrepareReport:
    """What a `prepare` run did: files written and skipped (already there) per output folder, inputs left out."""

    name: str
    out: Path
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def count(self, key: str, written: bool) -> None:
        table = self.written if written else self.skipped
        table[key] = table.get(key, 0) + 1

    def write_once(self, key: str, path: Path, write: Callable[[Path], None]) -> None:
        """``write(path)`` unless `path` exists, counted under `key` as written or already there. Every writer here
        writes through a temporary name (`deeplabv3p.atomic`), so a file that exists is complete: a run that
        stopped is finished by running it again."""
        done = path.is_file()
        if not done:
            write(path)
        self.count(key, written=not done)

    def summary(self) -> str:
        keys = sorted({*self.written, *self.skipped})
        lines = [f"{k}: {self.written.get(k, 0)} written, {self.skipped.get(k, 0)} already there" for k in keys]
        if self.ignored:
            shown = ", ".join(self.ignored[:10]) + (
                f" and {len(self.ignored) - 10} more" if len(self.ignored) > 10 else ""
            )
            lines.append(f"left out (not in the official lists / not inputs of {self.name}): {shown}")
        return "\n".join(lines)


# ----- inputs: files in zips or in folders, read one at a time -----------------------------------------------------
@dataclass(frozen=True)
class _Member:
    """One input file: ``where`` names it for messages; ``path`` is its path inside the zip or folder."""

    where: str
    path: PurePosixPath
    archive: Path | None

    @property
    def name(self) -> str:
        return self.path.name

    def read(self) -> bytes:
        if self.archive is None:
            return Path(self.where).read_bytes()
        with zipfile.ZipFile(self.archive) as zf:
            return zf.read(str(self.path))

    def image_size(self) -> tuple[int, int]:
        """(width, height) from the image header, without decoding the pixels."""
        try:
            if self.archive is None:
                with Image.open(self.where) as img:
                    return img.size
            with zipfile.ZipFile(self.archive) as zf, zf.open(str(self.path)) as f, Image.open(f) as img:
                return img.size
        except OSError as e:
            raise ValueError(f"cannot read {self.where}: {e}") from None


def _check_archive(path: Path, zf: zipfile.ZipFile) -> None:
    """Read every member of the zip `path` to the end (checking its CRC), so that a damaged download fails before
    anything is written, naming the member, rather than after the patches of the members before it."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        try:
            with zf.open(info) as f:
                while f.read(1 << 24):
                    pass
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
            raise ValueError(
                f"member {info.filename!r} of {str(path)!r} is damaged ({e}): the archive is corrupt or incomplete; "
                "download it again (nothing was written)"
            ) from None


_CHECKED: set[tuple[str, int, int]] = set()  # the zips read to the end by this process: (path, size, mtime)


def _members(folder: Path) -> Iterator[_Member]:
    """Every file of the zips in `folder` and every other file below it, in sorted order. Each zip is read to the
    end once first (`_check_archive`)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
                    stat = path.stat()
                    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
                    if key not in _CHECKED:
                        _check_archive(path, zf)
                        _CHECKED.add(key)
            except zipfile.BadZipFile:
                raise ValueError(f"{str(path)!r} is not a readable zip file (an incomplete download?)") from None
            for name in names:
                yield _Member(f"{path}:{name}", PurePosixPath(name), path)
        else:
            yield _Member(str(path), PurePosixPath(path.relative_to(folder).as_posix()), None)


@contextmanager
def _large_images() -> Iterator[None]:
    """Lift Pillow's decompression-bomb guard for the dataset's own large tiles and scenes."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _read_rgb(member: _Member, what: str, fix: str) -> np.ndarray:
    """An 8-bit 3-channel image as (H, W, 3) uint8; anything else is an error naming the file and the fix."""
    try:
        with Image.open(io.BytesIO(member.read())) as img:
            if img.mode not in ("RGB", "P", "RGBA") or (what == "image" and img.mode != "RGB"):
                raise ValueError(
                    f"{member.where} is a {img.mode} image; the {what} must be 8-bit RGB (3 channels). {fix}"
                )
            return np.asarray(img.convert("RGB"))
    except OSError as e:
        raise ValueError(f"cannot read {member.where}: {e}") from None


def _save_png(array: np.ndarray, path: Path, palette: tuple[tuple[int, int, int], ...] | None = None) -> None:
    """Write `array` as a PNG (an indexed one with `palette`) through a temporary name."""
    if palette is not None:
        # A full 256-colour palette, the unused entries grey and distinct: Pillow's PNG writer remaps indices
        # beyond a short palette (255 would become 15) and merges entries of the same colour.
        full = list(palette) + [(i, i, i) for i in range(len(palette), 256)]
        if len(set(full)) != 256:
            raise ValueError("a label palette must have distinct colours")
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array, np.uint8).tobytes())
        image.putpalette([v for c in full for v in c])
    else:
        image = Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _save_crop(
    pixels: Callable[[], np.ndarray], window: tuple[slice, slice], palette: tuple | None, path: Path
) -> None:
    """Write the `window` (rows, columns) of ``pixels()`` as a PNG; `pixels` reads its source on the first call."""
    _save_png(pixels()[window], path, palette)


def _copy(member: _Member, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(member.read())


# ----- ISPRS Potsdam / Vaihingen -----------------------------------------------------------------------------------
def isprs_boxes(height: int, width: int, size: int = ISPRS_PATCH) -> list[tuple[int, int, int, int]]:
    """mmseg's ISPRS patches ``(x0, y0, x1, y1)``: a size-``size`` grid from the top left, plus a last row/column
    flush with the bottom/right border (it overlaps the one before). Unique boxes, row by row.

    mmseg computes a stride-256 row count but steps by the patch size, so this is what its script writes; tiles
    smaller than a patch (which mmseg mishandles) are refused.
    """
    if height < size or width < size:
        raise ValueError(f"a tile of {width}x{height} is smaller than the {size}x{size} patches")

    def starts(length: int) -> list[int]:
        return sorted({min(s, length - size) for s in range(0, length, size)})

    return [(x, y, x + size, y + size) for y in starts(height) for x in starts(width)]


_ISPRS_KEY_WEIGHTS = np.array([4, 3, 2], dtype=np.int64)  # 4R + 3G + 2B, the key mmseg matches colours by


def isprs_indices(rgb: np.ndarray) -> np.ndarray:
    """Colour label (H, W, 3) -> raw indices 0..6 by mmseg's colour key; colours off the table become 0."""
    keys = rgb.astype(np.int64) @ _ISPRS_KEY_WEIGHTS
    lut = np.zeros(int(_ISPRS_KEY_WEIGHTS.sum()) * 255 + 1, dtype=np.uint8)
    for index, colour in enumerate(ISPRS_COLOURS):
        lut[int(np.dot(colour, _ISPRS_KEY_WEIGHTS))] = index
    return lut[keys]


@dataclass
class _Tile:
    tile: str
    split: str
    image: _Member | None = None
    label: _Member | None = None


def _isprs_tiles(
    raw: Path, name: str, parse: Callable[[_Member], tuple[str, str] | None], splits: dict[str, list[str]],
    report: PrepareReport,
) -> list[_Tile]:  # fmt: skip
    """Pair image and label tiles by tile id, checking there is exactly one of each for every listed tile."""
    split_of = {tile: split for split, tiles in splits.items() for tile in tiles}
    tiles: dict[str, _Tile] = {}
    for member in _members(raw):
        parsed = parse(member)
        if parsed is None:
            continue
        tile, kind = parsed
        if tile not in split_of:
            report.ignored.append(member.where)
            continue
        entry = tiles.setdefault(tile, _Tile(tile, split_of[tile]))
        if getattr(entry, kind) is not None:
            raise ValueError(
                f"two {kind} tiles for {name} tile {tile}: {getattr(entry, kind).where} and {member.where}; keep "
                "only the archives the layout needs in the folder"
            )
        setattr(entry, kind, member)
    if not tiles:
        raise FileNotFoundError(
            f"no {name} tiles in {str(raw)!r}: expected the official zips there (see `deeplabv3p prepare --help`)"
        )
    for kind in ("image", "label"):
        lacking = sorted(t.tile for t in tiles.values() if getattr(t, kind) is None)
        if lacking:
            raise FileNotFoundError(f"{name}: {len(lacking)} tile(s) have no {kind} tile in {str(raw)!r}: {lacking}")
    return sorted(tiles.values(), key=lambda t: (t.split, t.tile))


def _potsdam_parse(member: _Member) -> tuple[str, str] | None:
    match = re.fullmatch(r"top_potsdam_(\d+)_(\d+)_(.+)\.tif", member.name)
    if match is None:
        return None
    return f"{match[1]}_{match[2]}", "label" if "label" in str(member.path) else "image"


def _vaihingen_parse(member: _Member) -> tuple[str, str] | None:
    match = re.fullmatch(r"top_mosaic_09cm_(area\d+)(_noBoundary)?\.tif", member.name)
    if match is None:
        return None
    if match[2]:
        return match[1], "label"
    # the image zip also holds the non-eroded labels under the images' names (gts_for_participants/): images are top/
    return (match[1], "image") if member.path.parent.name == "top" else None


@dataclass(frozen=True)
class _Isprs:
    """What tells the two ISPRS downloads apart: tile names, the official split lists, the fix for a wrong input."""

    name: str
    parse: Callable[[_Member], tuple[str, str] | None]
    splits: dict[str, list[str]]
    fix: str


_POTSDAM = _Isprs(
    "potsdam", _potsdam_parse, POTSDAM_SPLITS,
    "Use 2_Ortho_RGB.zip for the images (mmseg's choice) and 5_Labels_all_noBoundary.zip for the labels.",
)  # fmt: skip
_VAIHINGEN = _Isprs(
    "vaihingen", _vaihingen_parse, VAIHINGEN_SPLITS,
    "Use the top/ tiles of ISPRS_semantic_labeling_Vaihingen.zip and the eroded ground truth zip.",
)  # fmt: skip


def _isprs_pixels(member: _Member, kind: str, fix: str) -> np.ndarray:
    """An image tile as RGB, or a label tile as raw indices."""
    array = _read_rgb(member, kind, fix)
    return isprs_indices(array) if kind == "label" else array


def _prepare_isprs(spec: _Isprs, raw: Path, out: Path, report: PrepareReport, progress: bool) -> None:
    tiles = _isprs_tiles(raw, spec.name, spec.parse, spec.splits, report)
    boxes_of = {}
    for tile in tiles:  # every tile's size is checked before any patch is written
        assert tile.image is not None and tile.label is not None
        width, height = tile.image.image_size()
        if tile.label.image_size() != (width, height):
            raise ValueError(
                f"{spec.name} tile {tile.tile}: the label tile {tile.label.where} is not the size of the image tile "
                f"{tile.image.where} ({width}x{height})"
            )
        try:
            boxes_of[tile.tile] = isprs_boxes(height, width)
        except ValueError as e:
            raise ValueError(
                f"{spec.name} tile {tile.tile} ({tile.image.where}): {e}; is it the official tile?"
            ) from None
    for split in ("train", "val"):
        for folder in ("img_dir", "ann_dir"):
            (out / folder / split).mkdir(parents=True, exist_ok=True)
    for tile in tqdm(tiles, desc=f"prepare {spec.name}", unit="tile", disable=not progress):
        assert tile.image is not None and tile.label is not None
        boxes = boxes_of[tile.tile]
        for kind, member, folder in (("image", tile.image, "img_dir"), ("label", tile.label, "ann_dir")):
            pixels = cache(partial(_isprs_pixels, member, kind, spec.fix))  # read once, if a patch is missing
            for x0, y0, x1, y1 in boxes:
                path = out / folder / tile.split / f"{tile.tile}_{x0}_{y0}_{x1}_{y1}.png"
                window = (slice(y0, y1), slice(x0, x1))
                report.write_once(f"{folder}/{tile.split}", path, partial(_save_crop, pixels, window, None))


# ----- iSAID -------------------------------------------------------------------------------------------------------
def isaid_windows(height: int, width: int, patch: int = ISAID_PATCH, step: int = ISAID_STEP) -> list[tuple]:
    """mmseg's iSAID windows ``(y0, y1, x0, x1)`` over an image padded to at least ``patch`` on each side: starts
    every `step` pixels, the last one moved back to end at the border; unique windows, column by column.

    mmseg pads a side only when the other side is not exactly ``patch`` (and then slices from a negative start); here
    every side shorter than ``patch`` is padded, which gives the same windows wherever mmseg's are sound.
    """
    height, width = max(height, patch), max(width, patch)
    xs = sorted({min(x, width - patch) for x in range(0, width, step)})
    ys = sorted({min(y, height - patch) for y in range(0, height, step)})
    return [(y, y + patch, x, x + patch) for x in xs for y in ys]


def _pad(array: np.ndarray, patch: int, value: int) -> np.ndarray:
    h, w = array.shape[:2]
    if h >= patch and w >= patch:
        return array
    pad = [(0, max(patch - h, 0)), (0, max(patch - w, 0))] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=value)


def isaid_indices(rgb: np.ndarray) -> np.ndarray:
    """iSAID colour mask (H, W, 3) -> class indices 0..15 by exact colour; other colours become 0 (background)."""
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    out = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for index, (r, g, b) in enumerate(ISAID_COLOURS):
        out[packed == ((r << 16) | (g << 8) | b)] = index
    return out


def _prepare_isaid(raw: Path, out: Path, report: PrepareReport, progress: bool) -> None:
    present = [s for s in ("train", "val", "test") if (raw / s).is_dir()]
    if not present:
        raise FileNotFoundError(
            f"{str(raw)!r} is not the iSAID download: expected train/, val/ (and test/) with images/*.zip and "
            f"Semantic_masks/*.zip, found {sorted(p.name for p in raw.iterdir()) if raw.is_dir() else 'nothing'}"
        )
    jobs: list[tuple[str, str, _Member, _Member | None]] = []
    for split in present:
        images = {
            m.path.stem: m
            for m in _members(raw / split / "images")
            if m.name.endswith(".png") and "_instance" not in m.name
        } if (raw / split / "images").is_dir() else {}  # fmt: skip
        if not images:
            raise FileNotFoundError(f"iSAID {split}: no P*.png images in {str(raw / split / 'images')!r} (or its zips)")
        labels: dict[str, _Member] = {}
        if split != "test":
            masks = raw / split / "Semantic_masks"
            if masks.is_dir():
                labels = {
                    m.name.split("_")[0]: m for m in _members(masks) if m.name.endswith("_instance_color_RGB.png")
                }
            lacking = sorted(set(images) - set(labels))
            if lacking:
                raise FileNotFoundError(
                    f"iSAID {split}: {len(lacking)} image(s) have no *_instance_color_RGB.png semantic mask in "
                    f"{str(masks)!r} (or its zips): {lacking[:10]}"
                )
            report.ignored += sorted(labels[k].where for k in set(labels) - set(images))
        jobs += [(split, stem, images[stem], labels.get(stem)) for stem in sorted(images)]
    for split in present:
        (out / "img_dir" / split).mkdir(parents=True, exist_ok=True)
        if split != "test":
            (out / "ann_dir" / split).mkdir(parents=True, exist_ok=True)
    for split, stem, image_member, label_member in tqdm(jobs, desc="prepare isaid", unit="image", disable=not progress):
        img_dir, ann_dir = out / "img_dir" / split, out / "ann_dir" / split
        if label_member is None:  # test: the images as they are
            report.write_once(f"img_dir/{split}", img_dir / image_member.name, partial(_copy, image_member))
            continue
        width, height = image_member.image_size()
        arrays = cache(partial(_isaid_arrays, stem, image_member, label_member, (width, height)))
        image, label = partial(_nth, arrays, 0), partial(_nth, arrays, 1)  # both read when the first is needed
        for y0, y1, x0, x1 in isaid_windows(height, width):
            name, window = f"{stem}_{y0}_{y1}_{x0}_{x1}", (slice(y0, y1), slice(x0, x1))
            report.write_once(f"img_dir/{split}", img_dir / f"{name}.png", partial(_save_crop, image, window, None))
            label_path = ann_dir / f"{name}_instance_color_RGB.png"
            report.write_once(f"ann_dir/{split}", label_path, partial(_save_crop, label, window, ISAID_COLOURS))


def _nth(arrays: Callable[[], tuple[np.ndarray, ...]], index: int) -> np.ndarray:
    return arrays()[index]


def _isaid_arrays(
    stem: str, image_member: _Member, label_member: _Member, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The padded image and class-index label of one iSAID scene; a label of another size is an error."""
    fix = "Use the iSAID semantic masks (Semantic_masks/images.zip), not the instance masks."
    image = _pad(_read_rgb(image_member, "image", fix), ISAID_PATCH, 0)
    label_rgb = _read_rgb(label_member, "label", fix)
    if label_rgb.shape[1::-1] != size:
        raise ValueError(
            f"iSAID {stem}: the mask {label_member.where} is {label_rgb.shape[0]}x{label_rgb.shape[1]} but the "
            f"image {size[1]}x{size[0]} (height x width)"
        )
    return image, _pad(isaid_indices(label_rgb), ISAID_PATCH, IGNORE)


# ----- LoveDA ------------------------------------------------------------------------------------------------------
def _prepare_loveda(raw: Path, out: Path, report: PrepareReport, progress: bool) -> None:
    pattern = re.compile(r"(?:.*/)?(Train|Val|Test)/(Rural|Urban)/(images_png|masks_png)/([^/]+\.png)")
    found: dict[tuple[str, str, str], _Member] = {}
    for member in _members(raw):
        match = pattern.fullmatch(str(member.path))
        if match is None:
            continue
        split, _, kind, file_name = match[1].lower(), match[2], match[3], match[4]
        if split == "test" and kind == "masks_png":
            continue
        key = (split, kind, file_name)
        if key in found:
            raise ValueError(f"LoveDA {split}: {file_name} is in both {found[key].where} and {member.where}")
        found[key] = member
    splits = sorted({k[0] for k in found})
    if not {"train", "val"} <= set(splits):
        raise FileNotFoundError(
            f"{str(raw)!r} is not the LoveDA download: expected Train.zip, Val.zip and Test.zip (or their folders "
            f"Train/, Val/, Test/ with Rural|Urban/images_png|masks_png), found splits {splits or 'none'}"
        )
    for split in ("train", "val"):
        images = {k[2] for k in found if k[:2] == (split, "images_png")}
        masks = {k[2] for k in found if k[:2] == (split, "masks_png")}
        if images != masks:
            raise FileNotFoundError(
                f"LoveDA {split}: images without masks {sorted(images - masks)[:10]}, masks without images "
                f"{sorted(masks - images)[:10]}"
            )
    for (split, kind, file_name), member in tqdm(sorted(found.items()), desc="prepare loveda", disable=not progress):
        folder = out / ("img_dir" if kind == "images_png" else "ann_dir") / split
        folder.mkdir(parents=True, exist_ok=True)
        report.write_once(f"{folder.parent.name}/{split}", folder / file_name, partial(_copy, member))


# ----- Cityscapes --------------------------------------------------------------------------------------------------
def _prepare_cityscapes(raw: Path, out: Path, report: PrepareReport, progress: bool) -> None:
    """``*_gtFine_labelTrainIds.png`` beside each ``*_gtFine_labelIds.png``, in place (`out` is `raw`), as mmseg's
    script does.

    mmseg rasterises the polygons with cityscapesscripts; mapping labelIds through the official table gives the
    same pixels (same rasteriser, same drawing order) without that dependency.
    """
    gt = raw / "gtFine"
    files = sorted(gt.rglob("*_gtFine_labelIds.png")) if gt.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no gtFine/SPLIT/CITY/*_gtFine_labelIds.png under {str(raw)!r}: pass the folder where "
            "gtFine_trainvaltest.zip was unpacked"
        )
    for path in tqdm(files, desc="prepare cityscapes", disable=not progress):
        target = path.with_name(path.name.replace("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"))
        report.write_once(f"gtFine/{path.relative_to(gt).parts[0]}", target, partial(_save_train_ids, path))


_TRAIN_IDS = label_lut(CITYSCAPES_ID_TO_TRAIN_ID, IGNORE)


def _save_train_ids(label_ids: Path, path: Path) -> None:
    with Image.open(label_ids) as img:
        if img.mode not in ("L", "P"):
            raise ValueError(f"{str(label_ids)!r} is a {img.mode} image; labelIds PNGs are 8-bit single-channel")
        ids = np.asarray(img)
    _save_png(_TRAIN_IDS[ids].astype(np.uint8), path)


@dataclass(frozen=True)
class Converter:
    """How one download is prepared: ``convert(raw, out, report, progress)``; `in_place` ones write beside their
    inputs (`out` is `raw`)."""

    convert: Callable[[Path, Path, PrepareReport, bool], None]
    in_place: bool = False


CONVERTERS: dict[str, Converter] = {
    "potsdam": Converter(partial(_prepare_isprs, _POTSDAM)),
    "vaihingen": Converter(partial(_prepare_isprs, _VAIHINGEN)),
    "isaid": Converter(_prepare_isaid),
    "loveda": Converter(_prepare_loveda),
    "cityscapes": Converter(_prepare_cityscapes, in_place=True),
}
if tuple(CONVERTERS) != PREPARE_NAMES:  # the command line offers PREPARE_NAMES without importing this module
    raise RuntimeError(f"deeplabv3p.train.names.PREPARE_NAMES {PREPARE_NAMES} differs from {tuple(CONVERTERS)}")


def _remove_stale_temporaries(out: Path) -> None:
    """Remove the temporaries that writers killed before their rename (``kill -9``, a power cut) left under `out`
    (`deeplabv3p.atomic.remove_stale`: only those whose writing process is gone)."""
    for folder, _, _ in os.walk(out):
        remove_stale(folder)


def prepare(name: str, raw: str | Path, out: str | Path | None = None, *, progress: bool = True) -> PrepareReport:
    """Convert the official download of `name` in `raw` into the layout `SegmentationDataset(..., layout=name)`
    (and mmseg) reads, under `out` (Cityscapes: in place, `out` None or `raw`). Safe to run again: outputs that
    exist are skipped."""
    if name not in CONVERTERS:
        raise ValueError(
            f"nothing to prepare for {name!r}: prepare knows {list(PREPARE_NAMES)}; the other zoo datasets are "
            "read as they unpack"
        )
    converter = CONVERTERS[name]
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"input folder {str(raw)!r} {absent(raw, 'a folder')}")
    if converter.in_place:
        if out is not None and Path(out).resolve() != raw.resolve():
            raise ValueError(
                f"{name} is prepared in place (the _labelTrainIds.png files go beside the _labelIds.png ones): "
                f"give no OUT, or OUT equal to RAW ({str(raw)!r}), got {str(out)!r}"
            )
        out = raw
    elif out is None:
        raise ValueError(f"prepare {name} needs an output folder")
    elif Path(out).resolve() == raw.resolve():
        raise ValueError(f"the output folder must differ from the input folder {str(raw)!r}")
    report = PrepareReport(name, Path(out))
    _remove_stale_temporaries(Path(out))
    with _large_images():
        converter.convert(raw, Path(out), report, progress)
    return report
