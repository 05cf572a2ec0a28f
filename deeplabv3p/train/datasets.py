"""`SegmentationDataset`: images and index masks from a folder layout or from explicit file lists.

Folder layout (masks share the image's relative path and stem; subfolders are allowed)::

    ROOT/classes.json                  ["background", "cat", ...]  or  {"classes": [...], "palette": [[r, g, b], ...]}
    ROOT/images/SPLIT/NAME.EXT         any extension predict reads (`deeplabv3p.inference.images.IMAGE_EXTENSIONS`)
    ROOT/masks/SPLIT/NAME.png          one class index per pixel (mode L, P or I); palette PNGs are read as indices

Images are read as `predict` reads them (`deeplabv3p.inference.images`), for a model of ``in_chans`` bands: RGB
rules for 3, the bands as stored otherwise (multi-band TIFFs with the ``tiff`` extra); uint8, 16-bit and float
files alike.

Labels follow mmseg: ``ignore_index`` (255) marks pixels that count nowhere, ``reduce_zero_label=True`` makes
label 0 "ignore" and shifts every other label down by one (for datasets whose 0 means "unlabelled", like ADE20K),
and then ``label_map`` (a lookup table over the stored values) translates them, as mmseg's ``label_map`` does.
Problems are reported with the file they come from: a missing mask and an empty split when the dataset is built,
a size mismatch and out-of-range labels when a sample is read (`verify` checks every sample at once,
`audit_labels` every label file).

`SegmentationDataset.from_layout` reads the zoo's benchmark datasets as they unpack (Cityscapes, ADE20K, VOC+SBD,
Pascal Context, LoveDA, Potsdam, Vaihingen, iSAID, Mapillary) and any tree prepared for mmseg; see `layouts`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision import tv_tensors
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .layouts import ResolvedLayout

from ..fields import check_bool, check_int
from ..inference.images import IMAGE_EXTENSIONS, ImageSpec, decode_image, open_image_file, to_input_scale
from ..inference.result import default_class_names

__all__ = ["SegmentationDataset", "read_classes_file"]

MASK_SUFFIX = ".png"
CLASSES_FILE = "classes.json"
_INDEX_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")
_MAX_LISTED = 10


def _listing(paths: Sequence[Any]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    more = f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
    return shown + more


def _check_classes(classes: Any, source: str) -> tuple[str, ...]:
    if isinstance(classes, int) and not isinstance(classes, bool):
        return default_class_names(check_int("classes", classes, 1))
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise ValueError(f"{source}: classes must be a non-empty list of names (or a class count), got {classes!r}")
    if not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{source}: every class name must be a str, got {list(classes)!r}")
    duplicates = sorted({c for c in classes if list(classes).count(c) > 1})
    if duplicates:
        raise ValueError(f"{source}: class names must be unique, repeated: {duplicates}")
    return tuple(classes)


def _check_palette(palette: Any, num_classes: int, source: str) -> tuple[tuple[int, int, int], ...]:
    if palette is None or (isinstance(palette, Sequence) and len(palette) == 0):
        return ()
    ok = isinstance(palette, Sequence) and all(
        isinstance(c, Sequence) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        for c in palette
    )
    if not ok:
        raise ValueError(f"{source}: palette must be a list of [r, g, b] integer triples in 0..255, got {palette!r}")
    if len(palette) != num_classes:
        raise ValueError(f"{source}: palette has {len(palette)} colours for {num_classes} classes")
    return tuple(tuple(c) for c in palette)


def read_classes_file(path: str | Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and palette from ``classes.json``: a list of names, or ``{"classes": [...], "palette": [...]}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; write the class names there as a JSON list, "
            'e.g. ["background", "road"], or pass classes= explicitly'
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from None
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"classes", "palette"})
        if unknown or "classes" not in data:
            raise ValueError(f"{str(path)!r}: expected keys 'classes' and optionally 'palette', got {sorted(data)}")
        classes = _check_classes(data["classes"], str(path))
        return classes, _check_palette(data.get("palette"), len(classes), str(path))
    return _check_classes(data, str(path)), ()


def _find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    images_dir, masks_dir = root / "images" / split, root / "masks" / split
    if not images_dir.is_dir():
        found = sorted(p.name for p in (root / "images").iterdir() if p.is_dir()) if (root / "images").is_dir() else []
        hint = f"splits found under {str(root / 'images')!r}: {found}" if found else f"{str(root)!r} has no images/"
        raise FileNotFoundError(f"image folder {str(images_dir)!r} does not exist ({hint})")
    images = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(
            f"split {split!r} is empty: no {'/'.join(s[1:] for s in IMAGE_EXTENSIONS)} images in {str(images_dir)!r}"
        )
    stems: dict[Path, Path] = {}
    for image in images:
        rel = image.relative_to(images_dir).with_suffix("")
        if rel in stems:
            raise ValueError(f"two images share the name {str(rel)!r}: {str(stems[rel])!r} and {str(image)!r}")
        stems[rel] = image
    pairs = [(image, masks_dir / (str(rel) + MASK_SUFFIX)) for rel, image in stems.items()]
    missing = [str(mask) for _, mask in pairs if not mask.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(pairs)} images in {str(images_dir)!r} have no mask (expected NAME.png under "
            f"{str(masks_dir)!r} with the image's name): {_listing(missing)}"
        )
    return pairs


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs for semantic segmentation.

    Args:
        root: dataset folder (see the module docstring), or None with `pairs`.
        split: subfolder of ``images/`` and ``masks/`` (``"train"``, ``"val"``, ...).
        pairs: explicit ``[(image_path, mask_path), ...]`` instead of `root`.
        classes: class names, or a class count; defaults to ``ROOT/classes.json``. Required with `pairs`.
        palette: one ``(r, g, b)`` per class, for drawing; defaults to the one in ``classes.json`` if any.
        reduce_zero_label: label 0 becomes ``ignore_index`` and labels 1..K become 0..K-1 (mmseg's option).
        ignore_index: the label of pixels that count nowhere (mmseg: 255).
        label_map: stored value -> label, as a 256-entry lookup table or a ``{value: label}`` dict (values not in
            the dict stay as they are), applied after `reduce_zero_label` (mmseg's order).
        transforms: ``f(image, mask) -> (image, mask)`` applied by ``__getitem__``; None returns samples as read.
            `deeplabv3p.train.fit` augments with mmseg's pipeline when this is None.
        in_chans: the band count of the model the images are for (see the module docstring); an image with
            another count is an error naming both.

    ``dataset[i]`` is ``(tv_tensors.Image (in_chans, H, W), tv_tensors.Mask int64 (H, W))`` before `transforms`,
    the image on the 0..255 scale: uint8 for 8-bit files (and 16-bit RGB ones, high byte), float32 for 16-bit
    multi-band and float files.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        *,
        pairs: Sequence[tuple[str | Path, str | Path]] | None = None,
        classes: Sequence[str] | int | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        reduce_zero_label: bool = False,
        ignore_index: int = 255,
        label_map: np.ndarray | Mapping[int, int] | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        in_chans: int = 3,
    ) -> None:
        if (root is None) == (pairs is None):
            raise ValueError("pass exactly one of root= (a dataset folder) and pairs= (a list of (image, mask) paths)")
        check_bool("reduce_zero_label", reduce_zero_label)
        check_int("ignore_index", ignore_index, 0)
        check_int("in_chans", in_chans, 1)
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be callable (image, mask) -> (image, mask), got {type(transforms)}")
        self.root = Path(root) if root is not None else None
        self.split = split
        self.in_chans = in_chans
        if self.root is not None:
            if not isinstance(split, str) or not split:
                raise ValueError(f"split must be a non-empty folder name, got {split!r}")
            if self.root.exists() and not self.root.is_dir():
                raise ValueError(
                    f"root {str(self.root)!r} is a file; pass the dataset folder (the one holding images/ and masks/)"
                )
            if not self.root.is_dir():
                raise FileNotFoundError(f"dataset folder {str(self.root)!r} does not exist")
            if classes is None:
                file_classes, file_palette = read_classes_file(self.root / CLASSES_FILE)
                classes, palette = file_classes, palette if palette is not None else file_palette
            self.samples = _find_pairs(self.root, split)
        else:
            if classes is None:
                raise ValueError("classes= (names or a count) is required with pairs=")
            self.samples = self._check_pairs(pairs)
        self.classes = _check_classes(classes, "classes")
        self.palette = _check_palette(palette, len(self.classes), "palette")
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index
        if ignore_index < len(self.classes):
            raise ValueError(f"ignore_index={ignore_index} collides with a class index (there are {len(self.classes)})")
        self.label_map = self._check_label_map(label_map)
        self.transforms = transforms
        self.layout: ResolvedLayout | None = None

    @classmethod
    def from_layout(
        cls,
        name: str,
        root: str | Path,
        split: str = "train",
        *,
        img_suffix: str | None = None,
        seg_suffix: str = ".png",
        dataset: str | None = None,
        classes: Sequence[str] | int | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        reduce_zero_label: bool | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ) -> SegmentationDataset:
        """One split of a benchmark dataset in its official (or mmseg-converted) folder layout.

        Args:
            name: ``"cityscapes"``, ``"ade20k"``, ``"voc12aug"``, ``"pascal_context"``, ``"pascal_context_59"``,
                ``"loveda"``, ``"potsdam"``, ``"vaihingen"``, ``"isaid"``, ``"mapillary_v1_65"``; or ``"mmseg"`` for
                any ``ROOT/img_dir/SPLIT`` + ``ROOT/ann_dir/SPLIT`` tree.
            root: the dataset folder (its usual parent, e.g. ``VOCdevkit`` or ``data/ade``, is accepted too).
            split: ``"train"`` / ``"val"`` (ADE20K and Mapillary also take ``"training"`` / ``"validation"``).
            img_suffix, seg_suffix: the file suffixes of the ``"mmseg"`` layout (image suffix: found when None).
            dataset: the zoo dataset whose classes, palette and label rules an ``"mmseg"`` tree holds
                (``"potsdam"``, ...); otherwise `classes` or ``ROOT/classes.json`` give them.
            classes, palette, reduce_zero_label: for the ``"mmseg"`` layout (named layouts take the zoo's).
            transforms: as for the constructor.

        Samples are ``(RGB uint8 image, int64 mask)`` in the model's label space: the zoo's ``reduce_zero_label``
        and ignore index 255 applied, Cityscapes labelIds mapped to train ids, Mapillary's 'Unlabeled' ignored.
        """
        from .layouts import MMSEG_LAYOUT, resolve, resolve_mmseg
        from .layouts import zoo_dataset as zoo

        if name == MMSEG_LAYOUT:
            resolved = resolve_mmseg(root, split, img_suffix, seg_suffix)
            meta = zoo(dataset) if dataset is not None else None
            if meta is not None:
                resolved.dataset = dataset
                classes = meta["classes"] if classes is None else classes
                palette = meta["palette"] if palette is None else palette
                reduce_zero_label = meta["reduce_zero_label"] if reduce_zero_label is None else reduce_zero_label
            elif classes is None:
                classes, file_palette = read_classes_file(resolved.root / CLASSES_FILE)
                palette = file_palette if palette is None else palette
        else:
            given = {"img_suffix": img_suffix, "dataset": dataset, "classes": classes, "palette": palette}
            given["reduce_zero_label"] = reduce_zero_label
            extra = sorted(k for k, v in given.items() if v is not None)
            if extra:
                raise ValueError(
                    f"{extra} apply to the 'mmseg' layout only; the {name!r} layout takes its classes and label "
                    "rules from the zoo"
                )
            resolved = resolve(name, root, split)
            assert resolved.dataset is not None  # every named layout is a zoo dataset
            meta = zoo(resolved.dataset)
            classes, palette, reduce_zero_label = meta["classes"], meta["palette"], meta["reduce_zero_label"]
        ds = cls(
            pairs=resolved.pairs, classes=classes, palette=palette, reduce_zero_label=bool(reduce_zero_label),
            label_map=resolved.label_map, transforms=transforms,
        )  # fmt: skip
        ds.root, ds.split, ds.layout = resolved.root, split, resolved
        return ds

    @staticmethod
    def _check_label_map(label_map: Any) -> np.ndarray | None:
        if label_map is None:
            return None
        if isinstance(label_map, Mapping):
            lut = np.arange(256, dtype=np.int64)
            for raw, label in label_map.items():
                if not (isinstance(raw, int) and 0 <= raw <= 255 and isinstance(label, int) and label >= 0):
                    raise ValueError(f"label_map entries must map 0..255 to labels >= 0, got {raw!r}: {label!r}")
                lut[raw] = label
            return lut
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
                raise FileNotFoundError(f"{len(missing)} {kind} file(s) of pairs do not exist: {_listing(missing)}")
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
    def official_count(self) -> int | None:
        """The split's size in the official release (layouts only), to tell an incomplete copy."""
        return self.layout.official_count if self.layout is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        where = f"root={str(self.root)!r}, split={self.split!r}" if self.root is not None else "pairs=[...]"
        if self.layout is not None:
            where = f"{self.layout.layout!r}, {where}"
        return f"SegmentationDataset({where}, {len(self)} samples, {self.num_classes} classes)"

    def read_image(self, index: int) -> np.ndarray:
        """The image as stored, ``(H, W, in_chans)`` in its file's dtype (uint8, uint16 or float), bands laid out
        as `predict` lays them out (RGB rules for 3 bands; EXIF orientation applied, as OpenCV's reader does)."""
        path = self.samples[index][0]
        pixels = decode_image(path, ImageSpec(self.in_chans), str(path))
        return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())

    def _hint(self) -> str:
        """What the layout suggests when a label file is not what it expects (how to convert the raw release)."""
        if self.layout is None:
            return ""
        return f" {self.layout.label_sources[0].mistake or ''}" + (
            f" To convert the release: {self.layout.prepare}." if self.layout.prepare else ""
        )

    def read_raw_mask(self, index: int) -> np.ndarray:
        """The label file's values as stored, ``(H, W)`` int64 (a single-channel index image is required)."""
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
                raise ValueError(f"label_map covers stored values 0..255, got {int(mask.min())}..{int(mask.max())}")
            mask = self.label_map[mask]
        return mask

    def read_mask(self, index: int) -> np.ndarray:
        """The mask as ``(H, W)`` int64 class indices, `reduce_zero_label` and `label_map` applied, labels checked."""
        mask = self.to_labels(self.read_raw_mask(index))
        self._check_labels(mask, self.samples[index][1])
        return mask

    def _check_labels(self, mask: np.ndarray, path: Path) -> None:
        k = self.num_classes
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= k))
        if not bad.any():
            return
        values = np.unique(mask[bad])
        hint = ""
        if not self.reduce_zero_label and values.max() == k and self.layout is None:
            hint = " If the masks count classes from 1 with 0 as 'unlabelled', use reduce_zero_label=True."
        shown = values[:_MAX_LISTED].tolist()
        raise ValueError(
            f"mask {str(path)!r} holds label(s) {shown} outside the {k} classes (valid: 0..{k - 1} and "
            f"ignore_index {self.ignore_index}{', after reduce_zero_label' if self.reduce_zero_label else ''}).{hint}"
            + self._hint()
        )

    def label_problem(self, index: int) -> str | None:
        """What is wrong with one label file (unreadable, colour-coded, values the layout never stores, labels
        outside the classes), or None."""
        try:
            raw = self.read_raw_mask(index)
            allowed = self.layout.label_sources[0].raw_values if self.layout is not None else None
            if allowed is not None:
                stray = sorted(set(np.unique(raw).tolist()) - allowed)
                if stray:
                    path = self.samples[index][1]
                    return f"mask {str(path)!r} holds value(s) {stray[:_MAX_LISTED]}:{self._hint()}"
            self._check_labels(self.to_labels(raw), self.samples[index][1])
        except ValueError as e:
            return str(e)
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
        hands these images to `predict`, which reads them exactly as ``dataset[i]`` does for training."""
        image, mask = self.read_image(index), self.read_mask(index)
        if image.shape[:2] != mask.shape:
            img_path, mask_path = self.samples[index]
            raise ValueError(
                f"image {str(img_path)!r} is {image.shape[1]}x{image.shape[0]} but its mask {str(mask_path)!r} is "
                f"{mask.shape[1]}x{mask.shape[0]} (width x height); they must be the same size"
            )
        return image, mask

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, mask = self.load(index)
        pixels = to_input_scale(
            torch.from_numpy(image).permute(2, 0, 1), ImageSpec(self.in_chans), str(self.samples[index][0])
        )
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
