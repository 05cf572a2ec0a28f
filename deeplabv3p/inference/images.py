"""Input images for `predict`: every accepted form, expanded lazily into single images and read into RGB tensors.

Accepted forms, single or in a list (sizes may differ):

- a file path (``str`` / ``Path``), or a directory (its image files, sorted by name, not recursive);
- a ``PIL.Image.Image``;
- a numpy array ``(H, W, 3)`` RGB, ``(H, W)`` / ``(H, W, 1)`` grayscale, ``(H, W, 4)`` RGBA, or ``(N, H, W, C)``;
- a torch tensor ``(3, H, W)`` / ``(N, 3, H, W)`` (also 1 or 4 channels, or ``(H, W)``).

Value rules, the same for every form:

- uint8 is 0..255. 16-bit (uint16 arrays and tensors, PIL modes ``I;16*`` and ``I``) keeps its high byte
  (``value >> 8``), which is what OpenCV's PNG reader (and so mmseg) does with 16-bit files.
- Floating point must lie in [0, 1] (torchvision's convention) and is scaled by 255 without rounding; anything
  else is refused, because a normalized tensor or a 0..255 float image would be silently mis-read.
- Grayscale becomes RGB by repeating the channel; RGBA (and LA, PA) drops alpha without compositing, as OpenCV's
  ``IMREAD_COLOR`` does. Palette, CMYK and other PIL modes are converted to RGB by PIL.
- Files are oriented by their EXIF tag (what a viewer shows, and what OpenCV's reader does); in-memory images are
  taken as given.

A read image is a ``(3, H, W)`` tensor, uint8 or float32 on the 0..255 scale, on the CPU (tensors keep their device).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")
ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor
_CHANNELS = (1, 3, 4)


@dataclass(frozen=True)
class ImageItem:
    """One image of a `predict` input, not read yet: what the user passed for it and how to name it."""

    source: Any
    name: str

    @property
    def path(self) -> Path | None:
        return self.source if isinstance(self.source, Path) else None

    def read(self) -> torch.Tensor:
        """The image as a ``(3, H, W)`` uint8 or float32 (0..255) tensor."""
        return read_image(self.source, self.name)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray | torch.Tensor):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def list_image_files(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name (by extension: see `IMAGE_EXTENSIONS`)."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(
            f"directory {str(directory)!r} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def _expand_one(value: Any, name: str) -> tuple[list[ImageItem], bool]:
    """Items of one input and whether it was a batch (a directory or a 4-D array)."""
    if isinstance(value, str | Path):
        path = Path(value)
        if path.is_dir():
            return [ImageItem(p, str(p)) for p in list_image_files(path)], True
        if not path.is_file():
            raise FileNotFoundError(f"{name}: image file {str(path)!r} does not exist")
        return [ImageItem(path, str(path))], False
    if isinstance(value, Image.Image):
        return [ImageItem(value, name)], False
    if isinstance(value, np.ndarray | torch.Tensor):
        batched = value.ndim == 4
        if batched:
            if value.shape[0] == 0:
                raise ValueError(f"{name}: empty batch ({_describe(value)})")
            items = [ImageItem(value[i], f"{name}[{i}]") for i in range(value.shape[0])]
        else:
            items = [ImageItem(value, name)]
        for item in items:
            _check_array_layout(item.source, item.name)
        return items, batched
    raise TypeError(
        f"{name}: unsupported image type {_describe(value)}; accepted: a file or directory path, a PIL image, "
        "a numpy array (H, W, 3) or a torch tensor (3, H, W), or a list of these"
    )


def expand_inputs(inputs: Any, name: str = "inputs") -> tuple[list[ImageItem], bool]:
    """All single images of ``inputs`` (nothing read yet) and whether the input was a batch.

    A list, a tuple, a directory and a 4-D array or tensor are batches; predict returns a list for them.
    Files are checked to exist and in-memory images to have a valid shape and dtype, so a bad input fails
    before any work is done.
    """
    if isinstance(inputs, list | tuple):
        if not inputs:
            raise ValueError(f"{name} is an empty {type(inputs).__name__}: pass at least one image")
        items: list[ImageItem] = []
        for i, value in enumerate(inputs):
            items.extend(_expand_one(value, f"{name}[{i}]")[0])
        return items, True
    return _expand_one(inputs, name)


def _check_array_layout(value: np.ndarray | torch.Tensor, name: str) -> None:
    """Shape and dtype of one in-memory image, before reading it."""
    is_tensor = isinstance(value, torch.Tensor)
    shape = tuple(value.shape)
    if len(shape) == 3:
        channel_axis = 0 if is_tensor else 2
        other_axis = 2 if is_tensor else 0
        if shape[channel_axis] not in _CHANNELS:
            if shape[other_axis] in _CHANNELS:
                hint = (
                    "tensors are channels-first (C, H, W): use x.permute(2, 0, 1)"
                    if is_tensor
                    else "numpy images are channels-last (H, W, C): use np.transpose(a, (1, 2, 0)) or torch.from_numpy"
                )
            else:
                hint = "expected 1, 3 or 4 channels"
            raise ValueError(f"{name}: cannot read {_describe(value)} as an image; {hint}")
    elif len(shape) != 2:
        layout = "(H, W), (3, H, W) or (N, 3, H, W)" if is_tensor else "(H, W), (H, W, 3) or (N, H, W, 3)"
        raise ValueError(f"{name}: cannot read {_describe(value)} as an image; expected {layout}")
    if min(shape) == 0:
        raise ValueError(f"{name}: empty image ({_describe(value)})")
    if isinstance(value, torch.Tensor):
        ok = value.dtype in (torch.uint8, torch.uint16) or value.is_floating_point()
    else:
        ok = value.dtype in (np.uint8, np.uint16) or np.issubdtype(value.dtype, np.floating)
    if not ok:
        raise TypeError(
            f"{name}: unsupported image dtype in {_describe(value)}; accepted: uint8 (0..255), uint16 (high byte "
            "is used) or floating point in [0, 1]"
        )


def read_image(source: Any, name: str = "image") -> torch.Tensor:
    """One image in any accepted form as a ``(3, H, W)`` tensor, uint8 or float32 on the 0..255 scale."""
    if isinstance(source, str | Path):
        return _read_file(Path(source))
    if isinstance(source, Image.Image):
        return _from_pil(source, name)
    if isinstance(source, np.ndarray):
        _check_array_layout(source, name)
        array = source if source.ndim == 2 else np.moveaxis(source, -1, 0)
        return _to_rgb(torch.from_numpy(np.ascontiguousarray(array)), name)
    if isinstance(source, torch.Tensor):
        _check_array_layout(source, name)
        return _to_rgb(source.detach(), name)
    raise TypeError(f"{name}: unsupported image type {_describe(source)}")


def _read_file(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as file:
            im = ImageOps.exif_transpose(file)
            im.load()
            return _from_pil(im, str(path))
    except Image.DecompressionBombError as e:
        raise ValueError(
            f"cannot read image file {str(path)!r}: {e} Raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image file {str(path)!r}: {e}") from e


def _from_pil(im: Image.Image, name: str) -> torch.Tensor:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(im).astype(np.int64)
        if array.min() < 0 or array.max() > 65535:
            raise ValueError(f"{name}: PIL mode {im.mode!r} image holds values outside 0..65535; cannot read it")
        return _to_rgb(torch.from_numpy((array >> 8).astype(np.uint8)), name)
    if im.mode == "F":
        return _to_rgb(torch.from_numpy(np.asarray(im, dtype=np.float32).copy()), name)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)


def _to_rgb(image: torch.Tensor, name: str) -> torch.Tensor:
    """(H, W) or (C, H, W) with C in 1/3/4 -> (3, H, W) uint8 or float32 0..255, applying the value rules."""
    if image.dim() == 2:
        image = image[None]
    if image.shape[0] == 4:
        image = image[:3]
    if image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    elif image.is_floating_point():
        image = image.to(torch.float32)
        lo, hi = (float(v) for v in torch.aminmax(image))
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(
                f"{name}: floating-point images must hold values in [0, 1], got min {lo:g} and max {hi:g}. "
                "Pass uint8 for 0..255 images; a normalized network input goes to model(x) directly."
            )
        image = image * 255.0
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image
