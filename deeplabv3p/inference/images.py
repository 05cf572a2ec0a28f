"""Input images for `predict`, `evaluate` and training: every accepted form, expanded lazily into single images
and read into ``(C, H, W)`` tensors on the 0..255 scale.

Accepted forms, single or in a list (sizes may differ):

- a file path (``str`` / ``Path``), or a directory (its image files, sorted by name, not recursive);
- a ``PIL.Image.Image``;
- a numpy array ``(H, W, C)`` or ``(H, W)``, or a batch ``(N, H, W, C)``;
- a torch tensor ``(C, H, W)`` or ``(H, W)``, or a batch ``(N, C, H, W)``.

How bands are read depends on the model's ``in_chans``:

- RGB models (``in_chans=3``): grayscale becomes RGB by repeating the channel; alpha is dropped without
  compositing, as OpenCV's ``IMREAD_COLOR`` does, but only alpha: a file's declared alpha (PNG RGBA/LA/PA, a TIFF
  whose last ExtraSample is associated or unassociated alpha) and the 4th channel of an in-memory array. A TIFF of
  four bands without declared alpha (RGB + NIR) is an error naming ``in_chans=4``. Palette, CMYK and other PIL
  modes are converted to RGB by PIL.
- Multi-band models (any other ``in_chans``, e.g. 4 for RGB + NIR): the bands as stored, which must number
  ``in_chans`` (an error names both counts otherwise).

TIFFs are read the same way whatever the band count: by PIL where PIL reads every stored band (8-bit gray, RGB,
CMYK, declared alpha; one 16-bit or float band), else by tifffile, the ``tiff`` extra
(``pip install "deeplabv3p[tiff]"``): pixel-interleaved, planar and page-per-band files all work. Which bands of a
TIFF are read is the rule rasters are read by (`deeplabv3p.inference.bands`): the spec's ``bands`` (the caller's,
else the weights' trained bands), taken from the bands as stored in that order, else the rules above.

Value rules (what the model's mean/std, also on the 0..255 scale, are applied to), one `ImageSpec` deciding them:

- uint8 is 0..255 as is.
- uint16 (arrays, tensors, 16-bit files): RGB models keep the high byte (``value >> 8``), which is what OpenCV's
  PNG reader (and so mmseg) does with 16-bit files; multi-band models keep every bit, as float32
  ``value * 255 / 65535``, because sensors store information in the low byte.
- Floating point is on the scale the spec names. ``"0..1"`` (`predict`'s inputs and image files: torchvision's
  convention) must lie in [0, 1] and is scaled by 255 without rounding. ``"0..255"`` (a dataset's samples, as
  `fit` and `evaluate` read them) must lie in [0, 255] and is taken as it is, except that an image whose values all
  lie in (0, 1] is refused as the 0..1 scale. Anything else is refused, because a normalized tensor or an image on
  the other scale would be silently mis-read.
- Files read by PIL are oriented by their EXIF tag (what a viewer shows, and what OpenCV's reader does); in-memory
  images are taken as given.
- A file whose header declares more pixels than the spec's ``max_pixels`` (predict's per-image pixel budget) is
  refused before it is decoded: a few hundred bytes of PNG can declare 95 megapixels (a decompression bomb).

Reading is two steps, so that a dataset can hand out the pixels as stored and predict read them the same way:
`decode_image` (layout: bands, orientation; the stored dtype) and `to_input_scale` (the value rules).
`read_image` is both: the one conversion of any image or sample to the network's input scale, used by `predict`,
`evaluate` and the training loader. A read image is uint8 or float32 on the CPU (tensors keep their device).
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..fields import check_band_count, check_choice, check_int, path_kind
from ..spelling import Placeholder, arg
from .bands import BandChoice
from .tiff import ALPHA_EXTRASAMPLES, is_tiff, read_tiff

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")
RGB_CHANNELS = (1, 3, 4)  # what an RGB model reads: gray, RGB, RGBA
_PIL_16_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_PIL_AS_STORED = ("L", "LA", "RGB", "RGBA", "CMYK")
_UINT16_SCALE = 255.0 / 65535.0

FloatScale = Literal["0..1", "0..255"]
FLOAT_SCALES: tuple[FloatScale, ...] = typing.get_args(FloatScale)


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes network input: the bands the network reads and the scale floating-point pixels are on.

    ``in_chans``: 3 reads by the RGB rules (gray repeated, alpha dropped), any other count takes the bands as
    stored, exactly that many; None keeps whatever bands are stored (for display). ``floats``: ``"0..1"`` for
    `predict`'s inputs and image files, ``"0..255"`` for a dataset's samples (see the module docstring).
    ``max_pixels``: a file declaring more pixels is refused before decoding (None: no budget). ``bands``: the bands
    of a TIFF file to read, in order (`deeplabv3p.inference.bands`; None: the rules for ``in_chans``).
    """

    in_chans: int | None = 3
    floats: FloatScale = "0..1"
    max_pixels: int | None = None
    bands: BandChoice | None = None

    def __post_init__(self) -> None:
        if self.in_chans is not None:
            check_int("in_chans", self.in_chans, 1)
            if self.bands is not None:
                check_band_count("bands", self.bands.bands, self.in_chans)
        check_choice("floats", self.floats, FLOAT_SCALES)
        if self.max_pixels is not None:
            check_int("max_pixels", self.max_pixels, 1)

    @property
    def accepted_dtypes(self) -> str:
        """The accepted dtypes, in words, for error messages."""
        floats = "in [0, 1]" if self.floats == "0..1" else "on the 0..255 scale"
        return f"uint8 (0..255), uint16 (0..65535) or floating point {floats}"


@dataclass(frozen=True)
class ImageItem:
    """One image of a `predict` input, not read yet: what the user passed for it, how to name it in errors and
    results, and how to read it (`spec`; `evaluate` passes dataset samples with ``floats="0..255"``)."""

    source: Any
    name: str
    spec: ImageSpec = field(default_factory=ImageSpec)

    @property
    def path(self) -> Path | None:
        return self.source if isinstance(self.source, Path) else None

    def read(self) -> torch.Tensor:
        """The image as a ``(in_chans, H, W)`` uint8 or float32 (0..255) tensor."""
        return read_image(self.source, self.spec, self.name)


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded: empty, cut short, not an image, or declaring more pixels than the
    budget. Folder prediction reports and skips such a file (an image the model cannot take is an error instead)."""


class _UnnamedImageError(Exception):
    """A problem with one image, worded without its name: `_naming` adds the name, which is only for error text."""

    def __init__(self, message: str, kind: type[Exception] = ValueError) -> None:
        super().__init__(message)
        self.kind = kind


@contextmanager
def _naming(name: str) -> Iterator[None]:
    """Raise a `_UnnamedImageError` of the block as its own kind of error, prefixed with the image's name."""
    try:
        yield
    except _UnnamedImageError as e:
        raise e.kind(f"{name}: {e}") from None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray | torch.Tensor):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def _band_count_error(bands: int, in_chans: int) -> _UnnamedImageError:
    return _UnnamedImageError(
        f"the image has {bands} band{'s' if bands != 1 else ''} but the model takes in_chans={in_chans}; "
        f"pass images of {in_chans} bands (or build the model with in_chans={bands})"
    )


def list_image_files(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name (by extension: see `IMAGE_EXTENSIONS`). Hidden files
    (``.NAME``: macOS ``._IMG_1.jpg`` resource forks, editors' and our own temporaries) are never inputs."""
    files = sorted(
        p
        for p in directory.iterdir()
        if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(
            f"directory {str(directory)!r} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def _expand_one(value: Any, name: str, spec: ImageSpec) -> tuple[list[ImageItem], bool]:
    """Items of one input and whether it was a batch (a directory or a 4-D array)."""
    if isinstance(value, ImageItem):  # already an item, with its own reading rule (evaluate's samples)
        if value.spec.in_chans != spec.in_chans:
            raise ValueError(
                f"{value.name}: read for in_chans={value.spec.in_chans} but the model takes in_chans={spec.in_chans}"
            )
        return [value], False
    if isinstance(value, str | Path):
        path = Path(value)
        if path.is_dir():
            return [_checked_bands(ImageItem(p, str(p), spec)) for p in list_image_files(path)], True
        if (kind := path_kind(path)) != "a file":
            where = "does not exist" if kind == "nothing" else f"is {kind}, not an image file"
            raise FileNotFoundError(f"{name}: image file {str(path)!r} {where}")
        return [_checked_bands(ImageItem(path, str(path), spec))], False
    if isinstance(value, Image.Image):
        return [_checked_bands(ImageItem(value, name, spec))], False
    if isinstance(value, np.ndarray | torch.Tensor):
        batched = value.ndim == 4
        if batched:
            if value.shape[0] == 0:
                raise ValueError(f"{name}: empty batch ({_describe(value)})")
            items = [ImageItem(value[i], f"{name}[{i}]", spec) for i in range(value.shape[0])]
        else:
            items = [ImageItem(value, name, spec)]
        for item in items:
            _checked_bands(item)
            with _naming(item.name):
                _check_array_layout(item.source, spec)
        return items, batched
    raise TypeError(
        f"{name}: unsupported image type {_describe(value)}; accepted: a file or directory path, a PIL image, "
        "a numpy array (H, W, C) or a torch tensor (C, H, W), or a list of these"
    )


def _checked_bands(item: ImageItem) -> ImageItem:
    """`item`, unless the caller chose bands (not the weights' trained bands, which images other than TIFFs are
    read without) and it is not a TIFF file: bands select from a TIFF's stored bands only."""
    choice = item.spec.bands
    if choice is None or choice.trained or (item.path is not None and is_tiff(item.path)):
        return item
    what = "an image file other than a TIFF" if item.path is not None else f"a {_describe(item.source)}"
    raise ValueError(
        f"{item.name}: bands={choice.bands} selects bands of TIFF files, and this is {what}, read as given: drop "
        "bands= (--bands), or select the bands of an array yourself (a[..., [3, 2, 1]])"
    )


def expand_inputs(inputs: Any, spec: ImageSpec | None = None, name: str = "inputs") -> tuple[list[ImageItem], bool]:
    """All single images of ``inputs`` (nothing read yet, each to be read by `spec`) and whether the input was a
    batch.

    A list, a tuple, a directory and a 4-D array or tensor are batches; predict returns a list for them.
    Files are checked to exist and in-memory images to have a valid shape (for a model of ``spec.in_chans``
    bands) and dtype, so a bad input fails before any work is done.
    """
    spec = spec or ImageSpec()
    if isinstance(inputs, list | tuple):
        if not inputs:
            raise ValueError(f"{name} is an empty {type(inputs).__name__}: pass at least one image")
        items: list[ImageItem] = []
        for i, value in enumerate(inputs):
            items.extend(_expand_one(value, f"{name}[{i}]", spec)[0])
        return items, True
    return _expand_one(inputs, name, spec)


def _check_array_layout(value: np.ndarray | torch.Tensor, spec: ImageSpec) -> None:
    """Shape and dtype of one in-memory image, before reading it."""
    in_chans = spec.in_chans
    is_tensor = isinstance(value, torch.Tensor)
    shape = tuple(value.shape)
    layout = "(H, W), (C, H, W) or (N, C, H, W)" if is_tensor else "(H, W), (H, W, C) or (N, H, W, C)"
    if in_chans == 3:
        layout = layout.replace("C", "3")
    if len(shape) == 3:
        channel_axis, other_axis = (0, 2) if is_tensor else (2, 0)
        accepted = RGB_CHANNELS if in_chans == 3 else None if in_chans is None else (in_chans,)
        if accepted is not None and shape[channel_axis] not in accepted:
            if shape[other_axis] in accepted:
                hint = (
                    "it looks like channels-last (H, W, C), and tensors are channels-first (C, H, W): use "
                    "x.permute(2, 0, 1)"
                    if is_tensor
                    else "it looks like channels-first (C, H, W), and numpy images are channels-last (H, W, C): use "
                    "np.transpose(a, (1, 2, 0)), or torch.from_numpy(a) for a (C, H, W) tensor"
                )
                raise _UnnamedImageError(f"cannot read {_describe(value)} as an image; {hint}")
            if in_chans == 3:
                raise _UnnamedImageError(
                    f"cannot read {_describe(value)} as an image; expected 1, 3 or 4 channels for an RGB "
                    f"model (in_chans=3), got {shape[channel_axis]}"
                )
            assert in_chans is not None
            raise _band_count_error(shape[channel_axis], in_chans)
    elif len(shape) == 2:
        if in_chans not in (None, 1, 3):
            raise _band_count_error(1, in_chans)
    else:
        raise _UnnamedImageError(f"cannot read {_describe(value)} as an image; expected {layout}")
    if min(shape) == 0:
        raise _UnnamedImageError(f"empty image ({_describe(value)})")
    if isinstance(value, torch.Tensor):
        ok = value.dtype in (torch.uint8, torch.uint16) or value.is_floating_point()
    else:
        ok = value.dtype in (np.uint8, np.uint16) or np.issubdtype(value.dtype, np.floating)
    if not ok:
        raise _UnnamedImageError(
            f"unsupported image dtype in {_describe(value)}; accepted: {spec.accepted_dtypes}", TypeError
        )


def read_image(source: Any, spec: ImageSpec | None = None, name: str = "image") -> torch.Tensor:
    """One image or sample in any accepted form, read by `spec` (default: an RGB model's input, floats in [0, 1]):
    ``(in_chans, H, W)``, uint8 or float32 on the 0..255 scale. The one conversion to the network's input scale."""
    spec = spec or ImageSpec()
    return to_input_scale(decode_image(source, spec, name), spec, name)


def decode_image(source: Any, spec: ImageSpec | None = None, name: str = "image") -> torch.Tensor:
    """One image as ``(C, H, W)`` in its stored dtype (uint8, uint16 or floating point), bands laid out for
    ``spec.in_chans`` (see the module docstring; None keeps the bands as stored)."""
    spec = spec or ImageSpec()
    if isinstance(source, str | Path):
        name = str(source)
    with _naming(name):
        if isinstance(source, str | Path) and spec.bands is not None and is_tiff(Path(source)):
            pixels = _select_bands(_decode_file(Path(source), None, spec.max_pixels), spec.bands)
        elif isinstance(source, str | Path):
            pixels = _decode_file(Path(source), spec.in_chans, spec.max_pixels)
        elif isinstance(source, Image.Image):
            pixels = _from_pil(source, spec.in_chans)
        elif isinstance(source, np.ndarray):
            _check_array_layout(source, spec)
            array = source if source.ndim == 2 else np.moveaxis(source, -1, 0)
            pixels = torch.from_numpy(np.ascontiguousarray(array))
        elif isinstance(source, torch.Tensor):
            _check_array_layout(source, spec)
            pixels = source.detach().as_subclass(torch.Tensor)
        else:
            raise _UnnamedImageError(f"unsupported image type {_describe(source)}", TypeError)
        return _lay_out(pixels if pixels.dim() == 3 else pixels[None], spec.in_chans)


def _select_bands(pixels: torch.Tensor, choice: BandChoice) -> torch.Tensor:
    """The bands of `choice` (1-based, in order) of a TIFF's ``(C, H, W)`` bands as stored; a band the file lacks is
    an error saying how to choose others (`BandChoice.missing`)."""
    pixels = pixels if pixels.dim() == 3 else pixels[None]
    problem = choice.missing(pixels.shape[0])
    if problem is not None:
        raise _UnnamedImageError(problem)
    return pixels[[b - 1 for b in choice.bands]]


def lay_out_bands(pixels: torch.Tensor, in_chans: int | None, name: str = "image") -> torch.Tensor:
    """Decoded ``(C, H, W)`` pixels -> the bands a model of `in_chans` reads (the rule of `decode_image`: gray
    repeated and a 4th band dropped for RGB models, exactly `in_chans` bands otherwise); errors name `name`."""
    with _naming(name):
        return _lay_out(pixels, in_chans)


def _lay_out(pixels: torch.Tensor, in_chans: int | None) -> torch.Tensor:
    """``(C, H, W)`` -> the bands a model of `in_chans` reads: RGB rules for 3, the same count otherwise."""
    bands = pixels.shape[0]
    if in_chans is None:
        return pixels
    if in_chans == 3:
        if bands not in RGB_CHANNELS:
            raise _UnnamedImageError(
                f"cannot read a {bands}-band image for an RGB model (in_chans=3); expected 1, 3 or 4 channels "
                f"(build the model with in_chans={bands} for all its bands)"
            )
        return pixels.expand(3, -1, -1) if bands == 1 else pixels[:3]
    if bands != in_chans:
        raise _band_count_error(bands, in_chans)
    return pixels


def to_input_scale(pixels: torch.Tensor, spec: ImageSpec | None = None, name: str = "image") -> torch.Tensor:
    """Decoded ``(C, H, W)`` pixels -> uint8 or float32 on the 0..255 scale by the value rules of the module
    docstring (16-bit keeps its high byte for RGB models, every bit otherwise; floats on ``spec.floats``)."""
    spec = spec or ImageSpec()
    with _naming(name):
        if pixels.dtype == torch.uint16:
            if spec.in_chans == 3:
                return (pixels.to(torch.int32) >> 8).to(torch.uint8)
            return pixels.to(torch.float32) * _UINT16_SCALE
        if pixels.is_floating_point():
            return _float_to_input_scale(pixels.to(torch.float32), spec.floats)
        if pixels.dtype != torch.uint8:
            raise _UnnamedImageError(
                f"unsupported image dtype {pixels.dtype}; accepted: {spec.accepted_dtypes}", TypeError
            )
        return pixels


def _float_to_input_scale(pixels: torch.Tensor, floats: FloatScale) -> torch.Tensor:
    """Float32 pixels on the `floats` scale -> the 0..255 scale; a value off the scale is refused, not guessed."""
    finite = torch.isfinite(pixels)
    if not bool(finite.all()):
        bad = ~finite
        nan, count = int(torch.isnan(pixels).sum()), int(bad.sum())
        band, row, col = (int(i) for i in bad.nonzero()[0])
        raise _UnnamedImageError(
            f"the image holds {count} non-finite value(s) ({nan} nan, {count - nan} inf), the first at band {band}, "
            f"row {row}, column {col}: one such pixel turns the loss and then every weight into NaN. Fix or drop "
            "the sample (nodata values of a raster are usually to be masked as ignore_index in the label)"
        )
    lo, hi = (float(v) for v in torch.aminmax(pixels))
    if floats == "0..1":
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise _UnnamedImageError(
                f"floating-point images must hold values in [0, 1], got min {lo:g} and max {hi:g}. "
                "Pass uint8 for 0..255 images (uint16 for 16-bit data); a normalized network input goes to "
                "model(x) directly."
            )
        return pixels * 255.0
    if not (lo >= 0.0 and hi <= 255.0):  # also catches NaN
        raise _UnnamedImageError(
            f"a float sample must hold values on the 0..255 scale, got min {lo:g} and max {hi:g}; samples are "
            "uint8, or float32 on the 0..255 scale, not normalized (training normalises with the model's mean/std)"
        )
    if 0.0 < hi <= 1.0:
        raise _UnnamedImageError(
            f"a float image whose values all lie in [0, 1] (max {hi:g}) looks like the 0..1 scale; samples are on "
            "the 0..255 scale: uint8, or float32 multiplied by 255"
        )
    return pixels


def display_image(source: Any, name: str = "image", choice: BandChoice | None = None) -> torch.Tensor:
    """An image of any band count as ``(3, H, W)`` on the 0..255 scale, for drawing on: what an RGB model reads
    for 1, 3 or 4 bands; the first three bands of more (the first band, as gray, of two). `choice` selects the
    bands of a TIFF file first, as the model read them."""
    pixels = decode_image(source, ImageSpec(None, bands=choice), name)
    bands = pixels.shape[0]
    if bands in RGB_CHANNELS:
        with _naming(name):
            pixels = _lay_out(pixels, 3)
        return to_input_scale(pixels, ImageSpec(3), name)
    shown = pixels[:3] if bands > 3 else pixels[:1].expand(3, -1, -1)
    return to_input_scale(shown, ImageSpec(bands), name)


@contextmanager
def open_image_file(path: Path, kind: str = "image file") -> Iterator[Image.Image]:
    """``PIL.Image.open(path)`` whose every failure, while opening or while reading pixels in the block, is a
    ValueError naming the file: not an image, truncated, or a decompression bomb (more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS`` allows)."""
    try:
        with Image.open(path) as im:
            yield im
    except Image.DecompressionBombError as e:
        raise UnreadableImageError(
            f"cannot read {kind} {str(path)!r}: {e} Raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UnreadableImageError(f"cannot read {kind} {str(path)!r}: {e}") from None


_STREAM_HINT = (
    "; a raster larger than memory is better streamed window by window into a label GeoTIFF: "
    "deeplabv3p.inference.predict_raster(model, PATH, 'labels.tif'), or deeplabv3p predict PATH --out labels.tif"
)


def _check_pixel_budget(path: Path, max_pixels: int) -> None:
    """Refuse a file whose header declares more than `max_pixels` pixels, before anything is decoded. A file PIL
    cannot open is left to the read, which names the problem."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Exception:
        return
    if width * height > max_pixels:
        raise UnreadableImageError(
            f"image file {str(path)!r} declares {height}x{width} (H x W) = {width * height} pixels, over the per-image "
            f"pixel budget of {max_pixels} (max_pixels): refused before decoding (a small file can declare a huge "
            f"image). If you trust it, pass {arg('max_pixels', Placeholder('N'))} (0: no budget)"
            + (_STREAM_HINT if is_tiff(path) else "")
        )


def _decode_file(path: Path, in_chans: int | None, max_pixels: int | None = None) -> torch.Tensor:
    kind = path_kind(path)
    if kind != "a file":
        where = "does not exist" if kind == "nothing" else f"is {kind}, not an image file"
        raise FileNotFoundError(f"image file {str(path)!r} {where}")
    if max_pixels is not None:
        _check_pixel_budget(path, max_pixels)
    if is_tiff(path):  # one rule for every band count: PIL where it reads every stored band, else tifffile
        problem = _pil_tiff_problem(path)
        if problem is not None:
            return _tiff_bands(path, in_chans, problem)
    try:
        with open_image_file(path) as file:
            im = ImageOps.exif_transpose(file)
            im.load()
            return _from_pil(im, in_chans)
    except (ValueError, _UnnamedImageError) as e:
        if not is_tiff(path):
            raise
        return _tiff_bands(path, in_chans, str(e))  # a TIFF whose data PIL could not decode


def _tiff_bands(path: Path, in_chans: int | None, problem: str) -> torch.Tensor:
    """A TIFF's bands through tifffile (PIL would not read them as stored: `problem`). For an RGB model the last
    band is dropped only where the file declares it alpha; four bands that are not (RGB + NIR) are an error."""
    try:
        bands = read_tiff(path)
    except ImportError as missing:
        raise ImportError(f"PIL cannot decode the TIFF file {str(path)!r} ({problem}); {missing}") from None
    pixels = torch.from_numpy(_checked_tiff_dtype(path, bands.pixels))
    if in_chans != 3:
        return pixels
    if bands.alpha:
        return pixels[:-1]  # RGBA -> RGB, gray + alpha -> gray
    if pixels.shape[0] == 4:
        raise _UnnamedImageError(
            "the TIFF has 4 bands and does not declare the 4th alpha (RGB + NIR?), so an RGB model (in_chans=3) "
            "would drop a band: build the model for 4 bands (create_model(..., in_chans=4), "
            "--model-kwargs in_chans=4, SegmentationDataset(..., in_chans=4)), choose three when predicting "
            "(predict(..., bands=(1, 2, 3)), --bands 1,2,3), or write the 3 bands to use to a file of their own"
        )
    return pixels


def _pil_tiff_problem(path: Path) -> str | None:
    """Why PIL would not read this TIFF's bands as stored, or None. PIL cannot open it; it has several samples of
    more than 8 bits (PIL keeps 8, and mixes up planar ones); extra samples not declared alpha (PIL drops them);
    or further pages of the first page's size (bands stored one per page: PIL reads the first). One 16-bit or
    float band, 8-bit gray, RGB, CMYK and alpha, and reduced-resolution pages (overviews) PIL reads."""
    try:
        with Image.open(path) as im:
            tags = getattr(im, "tag_v2", {})
            bits = tags.get(258, 8)  # BitsPerSample
            samples = tags.get(277, 1)  # SamplesPerPixel
            colour = {2: 3, 5: 4, 6: 3, 8: 3}.get(tags.get(262, 1), 1)  # Photometric: RGB, CMYK, YCbCr, Lab
            extra = tuple(tags.get(338, ()))  # ExtraSamples
            pages = _same_size_pages(im)
    except Image.DecompressionBombError:
        return None  # PIL's own error, with its hint, comes when the file is read
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as e:
        return str(e)
    if samples > 1 and max(bits if isinstance(bits, tuple) else (bits,)) > 8:
        return "PIL reads multi-sample TIFFs of more than 8 bits only at 8 bits"
    if samples > colour and not (samples == colour + 1 and extra and extra[-1] in ALPHA_EXTRASAMPLES):
        return f"PIL drops the {samples - colour} extra sample(s) that are not declared alpha"
    if pages > 1:
        return f"the file stores {pages} pages of one size (bands one per page); PIL reads the first only"
    return None


def _same_size_pages(im: Image.Image) -> int:
    """How many full-resolution pages of the first page's size a TIFF holds (1 for a single image)."""
    frames = getattr(im, "n_frames", 1)
    if frames == 1:
        return 1
    size, count = im.size, 0
    for i in range(frames):
        im.seek(i)
        subfile = int(getattr(im, "tag_v2", {}).get(254, 0))  # NewSubfileType: bit 0 overview, bit 2 mask
        reduced_or_mask = subfile & 0b101
        count += im.size == size and not reduced_or_mask
    im.seek(0)
    return count


def _checked_tiff_dtype(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f" or array.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(array)
    raise TypeError(
        f"TIFF file {str(path)!r} holds {array.dtype} pixels; accepted: uint8, uint16 or floating point in [0, 1]"
    )


def _from_pil(im: Image.Image, in_chans: int | None) -> torch.Tensor:
    """A PIL image as ``(C, H, W)`` pixels: converted to RGB for RGB models, bands as stored otherwise."""
    if im.mode in _PIL_16_BIT:
        array = np.array(im)
        if array.dtype != np.uint16:
            if array.min() < 0 or array.max() > 65535:
                raise _UnnamedImageError(f"PIL mode {im.mode!r} image holds values outside 0..65535; cannot read it")
            array = array.astype(np.uint16)
        return torch.from_numpy(np.ascontiguousarray(array))
    if im.mode == "F":
        return torch.from_numpy(np.asarray(im, dtype=np.float32).copy())
    if in_chans == 3:
        target = "RGB"
    elif im.mode in _PIL_AS_STORED:
        target = im.mode
    else:
        target = "RGBA" if "A" in im.mode or "a" in im.mode or "transparency" in im.info else "RGB"
        target = "L" if im.mode == "1" else target
    if im.mode != target:
        im = im.convert(target)
    array = np.array(im, dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1) if array.ndim == 3 else torch.from_numpy(array)
