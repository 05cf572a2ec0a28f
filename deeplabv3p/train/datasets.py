"""`SegmentationDataset`: images and index masks of one split, from a dataset folder in any layout of
`deeplabv3p.train.layouts` or from explicit file lists.

The folder layout (masks share the image's relative path and stem; subfolders are allowed)::

    ROOT/classes.json                  ["background", "cat", ...]  or  {"classes": [...], "palette": [[r, g, b], ...]}
    ROOT/images/SPLIT/NAME.EXT         any extension predict reads (`deeplabv3p.inference.images.IMAGE_EXTENSIONS`)
    ROOT/masks/SPLIT/NAME.png          one class index per pixel (mode L, P or I); palette PNGs are read as indices

The same constructor reads the zoo's benchmark datasets as they unpack (``layout="cityscapes"``, ``"ade20k"``,
``"voc12aug"``, ``"pascal_context"``, ``"pascal_context_59"``, ``"loveda"``, ``"potsdam"``, ``"vaihingen"``,
``"isaid"``, ``"mapillary_v1_65"``) and any tree prepared for mmseg (``layout="mmseg"``).

Large rasters need no cutting into patches first: ``layout="rasters"`` reads ``ROOT/images/SPLIT/NAME.tif`` with
``ROOT/masks/SPLIT/NAME.tif`` (class ids on the image's grid; the ``geo`` extra) window by window, random windows
for training and a grid of windows for validation (`deeplabv3p.train.raster_data`); each sample is a window.

Images are read as `predict` reads them (`deeplabv3p.inference.images`), for a model of ``in_chans`` bands: RGB
rules for 3, the bands as stored otherwise (multi-band TIFFs with the ``tiff`` extra); uint8, 16-bit and float
files alike.

Labels follow mmseg: ``ignore_index`` (255) marks pixels that count nowhere, ``reduce_zero_label=True`` makes
label 0 "ignore" and shifts every other label down by one (for datasets whose 0 means "unlabelled", like ADE20K),
and then ``label_map`` (a lookup table over the stored values) translates them, as mmseg's ``label_map`` does.
Problems are reported with the file they come from: a missing mask and an empty split when the dataset is built,
a size mismatch and out-of-range labels when a sample is read (`verify` checks every sample at once,
`audit_labels` every label file).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from tqdm.auto import tqdm

from ..fields import check_band_count, check_bands, check_bool, check_choice, check_int, check_pair
from ..inference.images import ImageSpec, decode_image, open_image_file, to_input_scale
from ..inference.rasters import require_rasterio
from ..inference.tiff import is_tiff
from .classes import CLASSES_FILE, check_classes, check_palette, read_classes_file
from .layouts import AUTO, FOLDER, IGNORE, MMSEG, RASTERS, Layout, ResolvedLayout, choose_layout, label_lut
from .layouts import zoo_dataset as zoo
from .pairing import MAX_LISTED, listing
from .raster_data import GRID, RANDOM, SAMPLINGS, RasterPairs

__all__ = ["SegmentationDataset"]

_INDEX_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")
DEFAULT_WINDOW = 512  # the rasters layout's window side, mmseg's usual training crop


def _label_rules(
    layout: Layout,
    root: Path,
    classes: Any,
    palette: Any,
    reduce_zero_label: bool | None,
    ignore_index: int,
    label_map: Any,
    in_chans: int,
) -> tuple[Any, Any, bool]:
    """``(classes, palette, reduce_zero_label)`` of a split in `layout`: a zoo dataset's where the layout holds one
    (the zoo's own layouts refuse other rules), else the given ones or ``ROOT/classes.json``."""
    if in_chans != 3 and layout.name not in (FOLDER, RASTERS):
        raise ValueError(
            f"the {layout.name!r} layout holds RGB images, but the model takes in_chans={in_chans}: put multi-band "
            f"data in the {FOLDER!r} layout (images/SPLIT, masks/SPLIT, {CLASSES_FILE}) or the {RASTERS!r} layout"
        )
    if layout.dataset is None:  # the folder layout, or an mmseg tree of no zoo dataset
        if classes is None:
            classes, file_palette = read_classes_file(root / CLASSES_FILE)
            palette = file_palette if palette is None else palette
        return classes, palette, bool(reduce_zero_label)
    meta = zoo(layout.dataset)
    if layout.name != MMSEG:  # a zoo dataset's official layout
        given = [k for k, v in (("classes", classes), ("palette", palette), ("label_map", label_map)) if v is not None]
        if given:
            raise ValueError(
                f"{given} apply to the {FOLDER!r} and {MMSEG!r} layouts only; the {layout.name!r} layout takes its "
                "classes and label rules from the zoo"
            )
        if reduce_zero_label is not None and reduce_zero_label != meta["reduce_zero_label"]:
            raise ValueError(
                f"reduce_zero_label={reduce_zero_label} contradicts the {layout.name!r} layout, whose labels are read "
                f"with reduce_zero_label={meta['reduce_zero_label']} (the zoo's rule); leave it out"
            )
        if ignore_index != IGNORE:
            raise ValueError(
                f"ignore_index={ignore_index}: the {layout.name!r} layout marks ignored pixels with {IGNORE}; leave "
                "it out"
            )
    return (
        meta["classes"] if classes is None else classes,
        meta["palette"] if palette is None else palette,
        meta["reduce_zero_label"] if reduce_zero_label is None else reduce_zero_label,
    )


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs for semantic segmentation: one split of a dataset folder, or explicit file pairs.

    Args:
        root: dataset folder (see the module docstring), or None with `pairs`.
        split: the split (``"train"``, ``"val"``, ...): a subfolder of ``images/`` and ``masks/`` in the folder
            layout (ADE20K and Mapillary also take ``"training"`` / ``"validation"``).
        layout: how `root` is laid out: ``"folder"``, ``"mmseg"`` (any ``ROOT/img_dir/SPLIT`` +
            ``ROOT/ann_dir/SPLIT`` tree), a zoo dataset's official layout (``"cityscapes"``, ``"ade20k"``, ...,
            `deeplabv3p.train.layouts.LAYOUTS`), or ``"auto"``: the folder layout when `root` holds
            ``classes.json``, else `dataset`'s official layout, else the folder layout. A zoo layout's root may
            be its usual parent (``VOCdevkit``, ``data/ade``, ...).
        dataset: the zoo dataset the data is labelled for (``"potsdam"``, ...): ``"auto"`` picks its layout and an
            ``"mmseg"`` tree takes its classes, palette and `reduce_zero_label` (unless given); the folder layout
            reads ``classes.json`` and a zoo layout is its own dataset.
        pairs: explicit ``[(image_path, mask_path), ...]`` instead of `root`.
        classes: class names, or a class count; defaults to ``ROOT/classes.json`` (or the zoo dataset's). Required
            with `pairs`.
        palette: one ``(r, g, b)`` per class, for drawing; defaults to the one in ``classes.json`` if any.
        reduce_zero_label: label 0 becomes ``ignore_index`` and labels 1..K become 0..K-1 (mmseg's option); None:
            the zoo dataset's rule, else False.
        ignore_index: the label of pixels that count nowhere (mmseg: 255; the zoo layouts' is 255).
        label_map: stored value -> label, as a 256-entry lookup table or a ``{value: label}`` dict (values not in
            the dict stay as they are), applied after `reduce_zero_label` (mmseg's order). The zoo layouts bring
            their own (Cityscapes labelIds -> train ids, Mapillary's 'Unlabeled' ignored).
        img_suffix, seg_suffix: the file suffixes of the ``"mmseg"`` layout (image suffix: found when None; label
            suffix: ``.png`` when None).
        transforms: ``f(image, mask) -> (image, mask)`` applied by ``__getitem__``; None returns samples as read.
            `deeplabv3p.train.fit` augments with mmseg's pipeline when this is None.
        in_chans: the band count of the model the images are for (see the module docstring); an image with
            another count is an error naming both. The layouts other than the folder and rasters layouts hold RGB
            images.
        window: the rasters layout's window ``(h, w)`` (or one side), default 512.
        sampling: the rasters layout's windows: ``"random"`` (drawn anew for every sample, seeded by `fit`) or
            ``"grid"`` (side by side, each pixel once); default: random for the split ``"train"``, else grid.
        samples_per_epoch: random windows in one pass over the dataset (its ``len``); default: as many as the
            grid has.
        margin: grid sampling: pixels of context read around each window (labelled ``ignore_index``, so that each
            pixel still counts once), default 0.
        bands: the rasters' bands to read, 1-based as GDAL counts (``(4, 3, 2)``), as many as `in_chans` (1 or 3 for
            an RGB model: one band is repeated as gray; `deeplabv3p.fields.band_counts`); default: the raster
            rule's (`deeplabv3p.inference.bands`).

    With ``layout="rasters"``, ``samples`` lists the raster pairs and each index is a window (`rasters` reads them).
    ``dataset[i]`` is ``(tv_tensors.Image (in_chans, H, W), tv_tensors.Mask int64 (H, W))`` before `transforms`,
    the image on the 0..255 scale: uint8 for 8-bit files (and 16-bit RGB ones, high byte), float32 for 16-bit
    multi-band and float files. Every argument is checked before the files are listed.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        *,
        layout: str = AUTO,
        dataset: str | None = None,
        pairs: Sequence[tuple[str | Path, str | Path]] | None = None,
        classes: Sequence[str] | int | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        reduce_zero_label: bool | None = None,
        ignore_index: int = 255,
        label_map: np.ndarray | Mapping[int, int] | None = None,
        img_suffix: str | None = None,
        seg_suffix: str | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        in_chans: int = 3,
        window: int | Sequence[int] | None = None,
        sampling: str | None = None,
        samples_per_epoch: int | None = None,
        margin: int | None = None,
        bands: Sequence[int] | None = None,
    ) -> None:
        if (root is None) == (pairs is None):
            raise ValueError("pass exactly one of root= (a dataset folder) and pairs= (a list of (image, mask) paths)")
        if reduce_zero_label is not None:
            check_bool("reduce_zero_label", reduce_zero_label)
        check_int("ignore_index", ignore_index, 0)
        check_int("in_chans", in_chans, 1)
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be callable (image, mask) -> (image, mask), got {type(transforms)}")
        raster_options = self._check_raster_options(layout, split, window, sampling, samples_per_epoch, margin, bands)
        if raster_options is not None and raster_options[-1] is not None:  # the count the model reads (and records)
            check_band_count("bands", raster_options[-1], in_chans)
        self.split = split
        self.in_chans = in_chans
        self.layout: ResolvedLayout | None = None
        if root is not None:
            if not isinstance(split, str) or not split:
                raise ValueError(f"split must be a non-empty name, got {split!r}")
            folder = Path(root)
            chosen = choose_layout(folder, layout, dataset, img_suffix=img_suffix, seg_suffix=seg_suffix)
            classes, palette, reduce_zero_label = _label_rules(
                chosen, folder, classes, palette, reduce_zero_label, ignore_index, label_map, in_chans
            )
            self.layout = chosen.resolve(folder, split)
            self.root: Path | None = self.layout.root
            self.samples = self.layout.pairs
            label_map = self.layout.label_map if label_map is None else label_map
        else:
            if layout != AUTO or dataset is not None or img_suffix is not None or seg_suffix is not None:
                raise ValueError("layout=, dataset=, img_suffix= and seg_suffix= describe a root= folder, not pairs=")
            if classes is None:
                raise ValueError("classes= (names or a count) is required with pairs=")
            self.root = None
            self.samples = self._check_pairs(pairs)
        self.classes = check_classes(classes, "classes")
        self.palette = check_palette(palette, len(self.classes), "palette")
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = ignore_index
        if ignore_index < len(self.classes):
            raise ValueError(f"ignore_index={ignore_index} collides with a class index (there are {len(self.classes)})")
        self.label_map = self._check_label_map(label_map)
        self.transforms = transforms
        self.rasters: RasterPairs | None = None
        if raster_options is not None:
            self.rasters = RasterPairs(
                self.samples, in_chans, *raster_options, ignore_index, self.to_labels, self._check_labels
            )

    @staticmethod
    def _check_raster_options(
        layout: str,
        split: str,
        window: Any,
        sampling: str | None,
        samples_per_epoch: int | None,
        margin: int | None,
        bands: Any,
    ) -> tuple[tuple[int, int], str, int | None, int, tuple[int, ...] | None] | None:
        """The rasters layout's ``(window, sampling, samples_per_epoch, margin, bands)`` with defaults, or None for
        another layout (which takes none of them); the ``geo`` extra is required first."""
        options = (("window", window), ("sampling", sampling), ("samples_per_epoch", samples_per_epoch),
                   ("margin", margin), ("bands", bands))  # fmt: skip
        given = [k for k, v in options if v is not None]
        if layout != RASTERS:
            if given:
                raise ValueError(f"{given} apply to layout={RASTERS!r} only, not to layout={layout!r}")
            return None
        require_rasterio(f"layout={RASTERS!r}")
        size = check_pair("window", DEFAULT_WINDOW if window is None else window)
        if sampling is None:
            sampling = RANDOM if split == "train" else GRID
        check_choice("sampling", sampling, SAMPLINGS)
        if samples_per_epoch is not None:
            check_int("samples_per_epoch", samples_per_epoch, 1)
            if sampling == GRID:
                raise ValueError("samples_per_epoch applies to sampling='random'; a grid has one sample per window")
        if margin is not None:
            check_int("margin", margin, 0)
            if sampling == RANDOM and margin:
                raise ValueError("margin applies to sampling='grid' (validation, evaluation), not to random windows")
        return size, sampling, samples_per_epoch, margin or 0, None if bands is None else check_bands("bands", bands)

    @staticmethod
    def _check_label_map(label_map: Any) -> np.ndarray | None:
        if label_map is None:
            return None
        if isinstance(label_map, Mapping):
            for raw, label in label_map.items():
                if not (isinstance(raw, int) and 0 <= raw <= 255 and isinstance(label, int) and label >= 0):
                    raise ValueError(f"label_map entries must map 0..255 to labels >= 0, got {raw!r}: {label!r}")
            return label_lut(label_map)
        lut = np.asarray(label_map)
        if lut.shape != (256,) or not np.issubdtype(lut.dtype, np.integer) or lut.min() < 0:
            raise ValueError(
                f"label_map must be a {{value: label}} dict or a lookup table of 256 labels >= 0, got shape {lut.shape}"
            )
        return lut.astype(np.int64)

    @staticmethod
    def _check_pairs(pairs: Any) -> list[tuple[Path, Path]]:
        if isinstance(pairs, str | Path) or not isinstance(pairs, Sequence):
            raise TypeError(f"pairs must be a list of (image_path, mask_path), got {type(pairs).__name__}")
        if not pairs:
            raise ValueError("pairs is empty: a dataset needs at least one (image, mask) pair")
        out = []
        for item in pairs:
            if isinstance(item, str | Path) or not isinstance(item, Sequence) or len(item) != 2:
                raise TypeError(f"every entry of pairs must be an (image_path, mask_path) pair, got {item!r}")
            out.append((Path(item[0]), Path(item[1])))
        for kind, idx in (("image", 0), ("mask", 1)):
            missing = [str(p[idx]) for p in out if not p[idx].is_file()]
            if missing:
                raise FileNotFoundError(f"{len(missing)} {kind} file(s) of pairs do not exist: {listing(missing)}")
        return out

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def name(self) -> str:
        """A short name for records: the zoo dataset of a layout, else the folder's name, or ``"custom"``."""
        if self.layout is not None and self.layout.dataset:
            return self.layout.dataset
        return self.root.resolve().name if self.root is not None else "custom"

    @property
    def bands(self) -> tuple[int, ...] | None:
        """The raster bands read (layout ``"rasters"`` with ``bands``), which training records in the weights'
        metadata so that prediction reads the same; None: the band rule for the model's band count."""
        return self.rasters.bands if self.rasters is not None else None

    @property
    def official_count(self) -> int | None:
        """The split's size in the official release (layouts only), to tell an incomplete copy."""
        return self.layout.official_count if self.layout is not None else None

    def __len__(self) -> int:
        return len(self.rasters) if self.rasters is not None else len(self.samples)

    def __repr__(self) -> str:
        where = f"root={str(self.root)!r}, split={self.split!r}" if self.root is not None else "pairs=[...]"
        if self.layout is not None:
            where = f"{self.layout.layout!r}, {where}"
        if self.rasters is not None:
            where = f"{where}, {self.rasters.describe()}"
        return f"SegmentationDataset({where}, {len(self)} samples, {self.num_classes} classes)"

    def read_image(self, index: int) -> np.ndarray:
        """The image as stored, ``(H, W, in_chans)`` in its file's dtype (uint8, uint16 or float), bands laid out
        as `predict` lays them out (RGB rules for 3 bands; EXIF orientation applied, as OpenCV's reader does)."""
        if self.rasters is not None:
            return self.load(index)[0]
        path = self.samples[index][0]
        pixels = decode_image(path, ImageSpec(self.in_chans), str(path))
        return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())

    def image_size(self, index: int) -> tuple[int, int]:
        """Sample `index`'s ``(H, W)``, from its mask file's header (cheap; `load` checks the image is as large);
        a raster window's size (a random window's before it is cut to a small raster)."""
        if self.rasters is not None:
            window = self.rasters.window_at(index)
            return window.height, window.width
        path = self.samples[index][1]
        with open_image_file(path, "mask") as img:
            return img.height, img.width

    def _image_header_size(self, index: int) -> tuple[int, int]:
        """The image's ``(H, W)`` from its header (a TIFF that PIL cannot open is decoded)."""
        path = self.samples[index][0]
        try:
            with open_image_file(path) as img:
                return img.height, img.width
        except ValueError:
            if not is_tiff(path):
                raise
            return tuple(decode_image(path, ImageSpec(self.in_chans), str(path)).shape[1:])  # type: ignore[return-value]

    def sample_problem(self, index: int) -> str | None:
        """What is wrong with sample `index`, from its files' headers and its mask's values (`label_problem`, and
        an image and mask of different sizes), or None; ``fit(check_data=True)`` asks it of every sample. A random
        raster window has none to tell beforehand (the rasters' headers are checked when the dataset is built, each
        window's labels when it is read)."""
        if self.rasters is not None and self.rasters.sampling == RANDOM:
            return None
        problem = self.label_problem(index)
        if self.rasters is not None:
            return problem
        if problem is not None:
            return problem
        try:
            image, mask = self._image_header_size(index), self.image_size(index)
        except (ValueError, FileNotFoundError) as e:
            return str(e)
        return self._size_mismatch(index, image, mask)

    def _size_mismatch(self, index: int, image: tuple[int, ...], mask: tuple[int, ...]) -> str | None:
        """The error text when sample `index`'s image and mask sizes ``(H, W)`` differ, else None."""
        if image[:2] == mask[:2]:
            return None
        img_path, mask_path = self.samples[index]
        return (
            f"image {str(img_path)!r} is {image[0]}x{image[1]} but its mask {str(mask_path)!r} is "
            f"{mask[0]}x{mask[1]} (height x width); they must be the same size"
        )

    def _hint(self) -> str:
        """What the layout suggests when a label file is not what it expects (how to convert the raw release)."""
        if self.layout is None:
            return ""
        mistake = self.layout.label_sources[0].mistake
        prepare = self.layout.prepare
        return (f" {mistake}" if mistake else "") + (f" To convert the release: {prepare}." if prepare else "")

    def read_raw_mask(self, index: int) -> np.ndarray:
        """The label file's values as stored, ``(H, W)`` int64 (a single-channel index image is required)."""
        if self.rasters is not None:
            raise TypeError("a rasters dataset reads its labels window by window: use load(index) or read_mask(index)")
        path = self.samples[index][1]
        with open_image_file(path, "mask") as img:
            if img.mode not in _INDEX_MODES:
                colour = " (a colour-coded label)" if img.mode in ("RGB", "RGBA") else ""
                raise ValueError(
                    f"mask {str(path)!r} is a {img.mode} image{colour}; masks must be single-channel index images "
                    "(PIL mode L, P or I) holding one class index per pixel." + self._hint()
                )
            return np.array(img, dtype=np.int64)

    def to_labels(self, raw: np.ndarray) -> np.ndarray:
        """Stored values -> the model's labels: `reduce_zero_label`, then `label_map`."""
        mask = raw
        if self.reduce_zero_label:
            ignored = (mask == 0) | (mask == self.ignore_index)
            mask = mask - 1
            mask[ignored] = self.ignore_index
        if self.label_map is not None:
            if mask.size and (mask.min() < 0 or mask.max() > 255):
                raise ValueError(
                    f"label_map covers stored values 0..255, got {int(mask.min())}..{int(mask.max())} (a 16-bit label "
                    "file? this dataset's labels are 8-bit: check the file is the release's own)"
                )
            mask = self.label_map[mask]
        return mask

    def read_mask(self, index: int) -> np.ndarray:
        """The mask as ``(H, W)`` int64 class indices, `reduce_zero_label` and `label_map` applied, labels checked."""
        if self.rasters is not None:
            return self.load(index)[1]
        path = self.samples[index][1]
        try:
            mask = self.to_labels(self.read_raw_mask(index))
        except ValueError as e:
            if str(path) in str(e):
                raise
            raise ValueError(f"mask {str(path)!r}: {e}") from None
        self._check_labels(mask, path)
        return mask

    def _check_labels(self, mask: np.ndarray, path: str | Path) -> None:
        k = self.num_classes
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= k))
        if not bad.any():
            return
        values = np.unique(mask[bad])
        hint = ""
        if not self.reduce_zero_label and values.max() == k and (self.layout is None or self.layout.dataset is None):
            hint = " If the masks count classes from 1 with 0 as 'unlabelled', use reduce_zero_label=True."
        shown = values[:MAX_LISTED].tolist()
        raise ValueError(
            f"mask {str(path)!r} holds label(s) {shown} outside the {k} classes (valid: 0..{k - 1} and "
            f"ignore_index {self.ignore_index}{', after reduce_zero_label' if self.reduce_zero_label else ''}).{hint}"
            + self._hint()
        )

    def label_problem(self, index: int) -> str | None:
        """What is wrong with one label file (unreadable, colour-coded, values the layout never stores, labels
        outside the classes), or None. A raster window is read whole (image and labels: nodata counts)."""
        try:
            if self.rasters is not None:
                self.load(index)
                return None
            raw = self.read_raw_mask(index)
            allowed = self.layout.label_sources[0].raw_values if self.layout is not None else None
            if allowed is not None:
                stray = sorted(set(np.unique(raw).tolist()) - allowed)
                if stray:
                    path = self.samples[index][1]
                    return f"mask {str(path)!r} holds value(s) {stray[:MAX_LISTED]}:{self._hint()}"
            self._check_labels(self.to_labels(raw), self.samples[index][1])
        except ValueError as e:
            if self.rasters is not None:  # the raster window's error names its file and window already
                return str(e)
            where = str(self.samples[index][1])
            return str(e) if where in str(e) else f"mask {where!r}: {e}"
        return None

    def audit_labels(self, indices: Sequence[int] | None = None, progress: bool = False) -> list[str]:
        """Read every label file (or those of `indices`) and return one line per problem found (see
        `label_problem`); evaluation and training call it before a long run."""
        chosen = range(len(self)) if indices is None else indices
        problems = []
        for i in tqdm(chosen, desc="audit labels", disable=not progress, leave=False):
            problem = self.label_problem(i)
            if problem is not None:
                problems.append(problem)
        return problems

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (H, W, in_chans) as stored, mask (H, W) int64)``, with sizes and labels checked. `evaluate`
        hands these images to `predict`, which reads them exactly as ``dataset[i]`` does for training. With the
        rasters layout, a window (a new random one at each call with random sampling)."""
        if self.rasters is not None:
            return self.rasters.sample(index)
        image, mask = self.read_image(index), self.read_mask(index)
        mismatch = self._size_mismatch(index, image.shape, mask.shape)
        if mismatch is not None:
            raise ValueError(mismatch)
        return image, mask

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, mask = self.load(index)
        name = f"sample {index} of {self.root}" if self.rasters is not None else str(self.samples[index][0])
        pixels = to_input_scale(torch.from_numpy(image).permute(2, 0, 1), ImageSpec(self.in_chans), name)
        sample = (tv_tensors.Image(pixels), tv_tensors.Mask(torch.from_numpy(mask)))
        return self.transforms(*sample) if self.transforms is not None else sample

    def verify(self) -> None:
        """Read every sample and raise one ValueError listing every problem found (sizes, labels, unreadable files)."""
        problems = []
        for i in range(len(self)):
            try:
                self.load(i)
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise ValueError(f"{len(problems)} of {len(self)} samples have problems:\n  " + "\n  ".join(problems))
