"""Training augmentation equal in effect to mmseg's pipeline, as torchvision ``transforms.v2`` transforms.

mmseg trains every DeepLabV3+ row with::

    RandomResize(scale, ratio_range=(0.5, 2.0), keep_ratio=True) -> RandomCrop(crop, cat_max_ratio=0.75)
    -> RandomFlip(0.5) -> PhotoMetricDistortion

torchvision supplies the horizontal flip and the resize/crop kernels (``tv_tensors.Mask`` is always resized with
nearest neighbour, so image and mask stay aligned); what it lacks is written here: mmseg's keep-ratio rescale rule,
the crop that avoids being dominated by one class, and mmseg's photometric distortion (additive brightness,
multiplicative contrast, HSV saturation and hue). All randomness comes from torch's global generator, so seeding
it (`deeplabv3p.loader` does, per sample) reproduces a sample exactly.

Inputs are ``(tv_tensors.Image (C, H, W), tv_tensors.Mask (H, W))``, the image uint8 or float32 on the 0..255
scale (float for 16-bit multi-band data). Padding to the crop size happens at batching, after normalisation, as
mmseg's data preprocessor does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size

from ..fields import check_float, check_pair
from ..inference.resize import rescale_size
from .settings import AugmentSettings

__all__ = ["AugmentSettings", "PhotoMetricDistortion", "RandomCrop", "RandomResize", "training_transforms"]


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _coin() -> bool:
    return bool(torch.randint(0, 2, ()))


class RandomResize(v2.Transform):
    """mmseg ``RandomResize(scale, ratio_range, keep_ratio=True)``: rescale to ``scale * r``, r uniform in the range.

    With ``scale=(a, b)`` the image is keep-ratio rescaled to ``(int(a * r), int(b * r))`` (mmcv's rule: long side
    within the larger, short side within the smaller). With ``scale=None`` the image's own size is multiplied by
    r, for datasets whose images already have the resolution to train at. Images use bilinear interpolation
    without antialiasing (as OpenCV), masks nearest neighbour.
    """

    def __init__(self, scale: tuple[int, int] | None = None, ratio_range: tuple[float, float] = (0.5, 2.0)) -> None:
        super().__init__()
        self.scale = check_pair("scale", scale) if scale is not None else None
        if not isinstance(ratio_range, Sequence) or len(ratio_range) != 2:
            raise ValueError(f"ratio_range must be a pair (low, high) of numbers > 0, got {ratio_range!r}")
        low, high = (check_float("ratio_range entries", r, 0.0, min_open=True) for r in ratio_range)
        if low > high:
            raise ValueError(f"ratio_range must be (low, high) with low <= high, got {ratio_range!r}")
        self.ratio_range = (low, high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        ratio = _uniform(*self.ratio_range)
        scale = ratio if self.scale is None else (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        size = rescale_size(height, width, scale)
        return {"size": [max(1, size[0]), max(1, size[1])]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(
            F.resize, inpt, size=params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=False
        )


class RandomCrop(v2.Transform):
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``: a random window, re-drawn (up to 10 times) while one class
    covers more than `cat_max_ratio` of its labelled pixels or it holds a single class.

    An image smaller than the crop is kept whole along that side (batching pads it, as mmseg does).
    """

    def __init__(self, size: int | tuple[int, int], cat_max_ratio: float = 0.75, ignore_index: int = 255) -> None:
        super().__init__()
        self.size = check_pair("size", size)
        self.cat_max_ratio = check_float("cat_max_ratio", cat_max_ratio, 0.0, 1.0, min_open=True)
        self.ignore_index = ignore_index

    def _draw(self, height: int, width: int) -> dict[str, int]:
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def _balanced(self, mask: torch.Tensor, box: dict[str, int]) -> bool:
        window = mask[..., box["top"] : box["top"] + box["height"], box["left"] : box["left"] + box["width"]]
        window = window[window != self.ignore_index]
        _, counts = torch.unique(window, return_counts=True)
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        box = self._draw(height, width)
        masks = [x for x in flat_inputs if isinstance(x, tv_tensors.Mask)]
        if self.cat_max_ratio < 1.0 and masks:
            for _ in range(10):
                if self._balanced(masks[0], box):
                    break
                box = self._draw(height, width)
        return box

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class PhotoMetricDistortion(v2.Transform):
    """mmseg ``PhotoMetricDistortion``, each step applied with probability 0.5, on images on the 0..255 scale.

    Order: brightness (add a uniform delta in ±`brightness_delta`), then contrast (multiply by a factor in
    `contrast_range`) either here or last (a coin decides), saturation (multiply HSV saturation by a factor in
    `saturation_range`), hue (shift HSV hue by an integer in [-`hue_delta`, `hue_delta`) on OpenCV's 0-180 scale).
    Every step clips to 0..255; uint8 images are truncated to uint8 after each, as mmseg does, float32 ones stay
    float. Saturation and hue are colour operations: images of other than three bands (multi-band data) get
    brightness and contrast only; the random draws are the same, so a seed gives the same brightness and
    contrast whatever the band count. Masks pass through untouched.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        # Draw every decision up front, in mmseg's order, so one sample's randomness is fixed by the seed.
        p: dict[str, Any] = {}
        p["brightness"] = _uniform(-self.brightness_delta, self.brightness_delta) if _coin() else None
        p["contrast_first"] = _coin()
        p["contrast"] = _uniform(*self.contrast_range) if _coin() else None
        p["saturation"] = _uniform(*self.saturation_range) if _coin() else None
        p["hue"] = int(torch.randint(-self.hue_delta, self.hue_delta, ())) if _coin() else None
        return p

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) or not isinstance(inpt, torch.Tensor):
            return inpt
        if inpt.dtype not in (torch.uint8, torch.float32):
            raise TypeError(f"PhotoMetricDistortion expects a uint8 or float32 image (0..255), got {inpt.dtype}")
        img = inpt.as_subclass(torch.Tensor)
        dtype, colour = img.dtype, img.shape[-3] == 3
        if params["brightness"] is not None:
            img = _clip(img.float() + params["brightness"], dtype)
        if params["contrast_first"] and params["contrast"] is not None:
            img = _clip(img.float() * params["contrast"], dtype)
        if colour and params["saturation"] is not None:
            img = _scale_saturation(img, params["saturation"])
        if colour and params["hue"] is not None:
            img = _shift_hue(img, params["hue"] / 180.0)
        if not params["contrast_first"] and params["contrast"] is not None:
            img = _clip(img.float() * params["contrast"], dtype)
        return tv_tensors.wrap(img, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else img


def _clip(img: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Clip to 0..255 and return in `dtype` (uint8 truncates, as mmseg's ``astype(np.uint8)``)."""
    return img.clamp_(0, 255).to(dtype)


def _shift_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    if img.dtype == torch.uint8:
        return F.adjust_hue(img, shift)
    return F.adjust_hue(img / 255.0, shift) * 255.0  # torchvision takes float images on the 0..1 scale


def _scale_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply HSV saturation by `factor` (clipped at 1), keeping hue and value.

    With value V = max and saturation S = (V - min) / V, every channel is ``V - (V - c)``-proportional to S, so
    scaling S by k maps each channel to ``V - (V - c) * k``; k is capped at ``1 / S`` where S would exceed 1.
    """
    x = img.float()
    v = x.amax(dim=-3, keepdim=True)
    spread = v - x.amin(dim=-3, keepdim=True)
    k = torch.where(spread > 0, torch.clamp(v / spread.clamp_min(1e-6), max=factor), torch.ones_like(v))
    return _clip(v - (v - x) * k, img.dtype)


def training_transforms(augment: AugmentSettings, ignore_index: int = 255) -> v2.Compose:
    """mmseg's training pipeline: random resize -> random crop -> horizontal flip -> photometric distortion."""
    check_float("flip_prob", augment.flip_prob, 0.0, 1.0)
    steps: list[v2.Transform] = [
        RandomResize(augment.scale, augment.ratio_range),
        RandomCrop(augment.crop_size, augment.cat_max_ratio, ignore_index),
        v2.RandomHorizontalFlip(augment.flip_prob),
    ]
    if augment.photometric:
        steps.append(PhotoMetricDistortion())
    return v2.Compose(steps)
