"""`SegmentationResult`: what `predict` returns for one image, and the ways to look at it (colours, overlay, files)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..atomic import atomic_write_bytes
from ..fields import absent, check_float

if TYPE_CHECKING:
    from .bands import BandChoice

SAVE_KINDS = ("labels", "color", "overlay")


def default_palette(num_classes: int) -> np.ndarray:
    """A fixed ``(num_classes, 3)`` uint8 palette for weights that bring none.

    The first 256 colours are the PASCAL VOC colour map (bits of the class index spread over R, G and B, so
    neighbouring classes get clearly different colours); further classes get seeded random colours.
    """
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(min(num_classes, 256)):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    if num_classes > 256:
        palette[256:] = np.random.default_rng(0).integers(0, 256, size=(num_classes - 256, 3), dtype=np.uint8)
    return palette


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``("class_0", "class_1", ...)``: the names of classes nothing names (predictions, datasets, metric tables)."""
    return tuple(f"class_{i}" for i in range(num_classes))


def save_image_atomic(image: Image.Image, path: str | Path, **save_kwargs: Any) -> Path:
    """Write ``image`` to ``path`` all or nothing (`deeplabv3p.atomic.atomic_write_bytes`): never half-written.

    The format follows the file extension, as in ``Image.save``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot save {str(path)!r}: folder {str(path.parent)!r} {absent(path.parent, 'a folder')}"
        )
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save {str(path)!r}: unknown image file extension {path.suffix!r}")
    encoded = io.BytesIO()  # encoded in memory: PIL's encoders may ignore a short write to a file
    image.save(encoded, format=fmt, **save_kwargs)
    atomic_write_bytes(path, encoded.getvalue())
    return path


@dataclass(eq=False)
class SegmentationResult:
    """The segmentation of one image, at that image's original size.

    Attributes:
        labels: ``(H, W)`` int64 class indices (argmax after the final resize).
        probs: ``(num_classes, H, W)`` float32 class probabilities, only when asked for (``return_probs=True``).
        classes: class names, one per class.
        palette: ``(num_classes, 3)`` uint8 RGB colours, one per class.
        source: the input this came from (a path, or the in-memory image, not copied); `overlay` draws on it.
        name: the input's name (file path, or ``inputs[i]``).
        seconds: wall-clock seconds the network and post-processing took for this image (a batch's time is
            shared equally among its images); reading and resizing ran ahead, overlapped, and are not included.
        bands: the bands of a TIFF `source` the model read (`deeplabv3p.inference.bands`; None: the rules for its
            ``in_chans``); `overlay` draws on them.
    """

    labels: np.ndarray
    classes: tuple[str, ...]
    palette: np.ndarray
    probs: np.ndarray | None = None
    source: Any = field(default=None, repr=False)
    name: str = ""
    seconds: float | None = None
    bands: BandChoice | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the image and of `labels`."""
        return self.labels.shape[0], self.labels.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def present_classes(self) -> list[str]:
        """Names of the classes that occur in `labels`, in class order."""
        return [self.classes[i] for i in np.unique(self.labels)]

    def colorize(self) -> Image.Image:
        """`labels` painted with `palette`, as an RGB image."""
        return Image.fromarray(self.palette[self.labels])

    def overlay(self, alpha: float = 0.5, image: Any = None) -> Image.Image:
        """The colour labels blended over the image: ``(1 - alpha) * image + alpha * colours``, as RGB.

        ``image`` defaults to the input the result came from (re-read from disk for a path, from the bands the
        model read); any accepted image form of the same size may be given instead. A multi-band image is drawn
        from its first three bands.
        """
        from .images import display_image

        check_float("alpha", alpha, 0.0, 1.0)
        source = self.source if image is None else image
        if source is None:
            raise ValueError("this result keeps no input image: pass overlay(image=...)")
        bands = self.bands if image is None else None
        base = display_image(source, self.name or "image", bands).float().cpu()
        if tuple(base.shape[1:]) != self.size:
            raise ValueError(
                f"overlay image is {base.shape[1]}x{base.shape[2]} but the labels are {self.size[0]}x{self.size[1]} "
                "(height x width)"
            )
        base_hwc = base.permute(1, 2, 0).numpy()
        colors = self.palette[self.labels].astype(np.float32)
        blended = (1.0 - alpha) * base_hwc + alpha * colors
        return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))

    def label_image(self) -> Image.Image:
        """`labels` as a lossless image: a palette PNG image (mode ``P``) up to 256 classes, 16-bit grayscale above."""
        if self.num_classes <= 256:
            image = Image.fromarray(self.labels.astype(np.uint8))
            image.putpalette(self.palette[:256].astype(np.uint8).reshape(-1).tolist())
            return image
        if self.num_classes > 65536:
            raise ValueError(f"cannot store {self.num_classes} classes in a 16-bit label image")
        return Image.fromarray(self.labels.astype(np.uint16))

    def save(self, path: str | Path, kind: str = "labels", alpha: float = 0.5) -> Path:
        """Write the result to ``path`` (atomically) and return the path.

        ``kind="labels"`` (default) writes the class indices as a PNG that opens in colour (palette PNG; pixel
        values are the class indices, so ``np.asarray(Image.open(path))`` gives `labels` back). ``"color"`` writes
        `colorize`, ``"overlay"`` writes `overlay` with ``alpha``; both in any format PIL knows by extension.
        """
        if kind not in SAVE_KINDS:
            raise ValueError(f"kind must be one of {list(SAVE_KINDS)}, got {kind!r}")
        path = Path(path)
        if kind == "labels":
            if path.suffix.lower() != ".png":
                raise ValueError(f"label maps are saved as PNG (lossless); got {str(path)!r}")
            return save_image_atomic(self.label_image(), path)
        image = self.colorize() if kind == "color" else self.overlay(alpha)
        if path.suffix.lower() in (".jpg", ".jpeg"):
            return save_image_atomic(image, path, quality=95)
        return save_image_atomic(image, path)

    def __repr__(self) -> str:
        probs = "" if self.probs is None else ", probs"
        return (
            f"SegmentationResult({self.name!r}, size={self.size[0]}x{self.size[1]} (HxW), "
            f"num_classes={self.num_classes}{probs})"
        )
