"""Image rescaling exactly as mmseg's test pipeline does it: mmcv's size rule and OpenCV's bilinear resize.

mmseg resizes test images with ``mmcv.imrescale`` (cv2 backend, bilinear) on the uint8 image. OpenCV's
``INTER_LINEAR`` on uint8 is not ``F.interpolate``: it uses 11-bit fixed-point weights, an integer vertical pass
with its own rounding, unclamped vertical border weights and a switch to area averaging for an exact 2x
downscale. `resize_image` reproduces that arithmetic with integer tensor ops, so a uint8 image resized here is
bit-identical to ``cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)`` (checked against OpenCV 4.5.5 and
5.0 on 300 random size pairs, and re-checkable with ``benchmarks/check_cv2_resize.py``) without depending on
OpenCV. Float images follow the same geometry with float weights, as OpenCV does for float input.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from ..fields import check_float

# OpenCV's INTER_RESIZE_COEF_BITS: bilinear weights are integers out of 2**11.
_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


def rescale_size(height: int, width: int, scale: tuple[int, int] | float) -> tuple[int, int]:
    """mmcv's keep-ratio rule: the ``(height, width)`` that ``mmcv.imrescale(img, scale)`` produces.

    ``scale = (a, b)`` bounds the long side by ``max(a, b)`` and the short side by ``min(a, b)``: the factor is
    ``min(max(a, b) / long_side, min(a, b) / short_side)``, so an image is upscaled too when it is smaller. A number
    is the factor itself. Each side becomes ``int(side * factor + 0.5)``.
    """
    if isinstance(scale, int | float) and not isinstance(scale, bool):
        factor = check_float("scale", scale, 0.0, min_open=True)
    else:
        a, b = cast(tuple[int, int], scale)  # a bool is no pair either: unpacking it raises TypeError
        factor = min(max(a, b) / max(height, width), min(a, b) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _axis_coefficients(n_in: int, n_out: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and the float32 weight of i1 along one axis, computed as OpenCV does.

    The source coordinate is ``(d + 0.5) * (1 / (n_out / n_in)) - 0.5`` in double, cast to float. OpenCV clamps
    horizontal borders (weight 0 on a clamped index) but not vertical ones: there the fractional weight is kept
    and only the row index is clamped, so a border row is a weighted sum of the same row twice.
    """
    scale = 1.0 / (n_out / n_in)
    pos = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0.astype(np.float32)).astype(np.float32)
    if clamp:
        outside = (i0 < 0) | (i0 >= n_in - 1)
        frac[outside] = 0.0
    i1 = np.clip(i0 + 1, 0, n_in - 1)
    i0 = np.clip(i0, 0, n_in - 1)
    return i0, i1, frac


def _weights(frac: np.ndarray, fixed_point: bool) -> tuple[np.ndarray, np.ndarray]:
    w0 = np.float32(1.0) - frac
    if not fixed_point:
        return w0, frac
    # saturate_cast<short>(w * 2048): round half to even, as cvRound does.
    return np.rint(w0 * np.float32(_COEF_SCALE)).astype(np.int32), np.rint(frac * np.float32(_COEF_SCALE)).astype(
        np.int32
    )


def _as_tensor(values: np.ndarray, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(values).to(device=like.device, dtype=dtype)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a ``(..., C, H, W)`` image to ``size = (height, width)``, as ``cv2.resize`` does.

    uint8 in, uint8 out (bit-exact OpenCV fixed-point arithmetic); float in, float out (OpenCV's geometry with
    float weights). An unchanged size returns the input itself.
    """
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize target must be at least 1x1, got {out_h}x{out_w} (height x width)")
    in_h, in_w = image.shape[-2:]
    if (out_h, out_w) == (in_h, in_w):
        return image
    fixed_point = image.dtype == torch.uint8
    if not fixed_point and not image.is_floating_point():
        raise TypeError(f"resize_image expects a uint8 or floating-point image, got {image.dtype}")
    if in_h == 2 * out_h and in_w == 2 * out_w:
        return _halve(image)
    y0, y1, fy = _axis_coefficients(in_h, out_h, clamp=False)
    x0, x1, fx = _axis_coefficients(in_w, out_w, clamp=True)
    a0, a1 = _weights(fx, fixed_point)
    b0, b1 = _weights(fy, fixed_point)
    work = torch.int32 if fixed_point else image.dtype
    # Horizontal pass, gathering from the (small) uint8 image before widening.
    rows = image.index_select(-1, _as_tensor(x0, image, torch.long)).to(work)
    rows.mul_(_as_tensor(a0, image, work))
    right = image.index_select(-1, _as_tensor(x1, image, torch.long)).to(work)
    rows.add_(right.mul_(_as_tensor(a1, image, work)))
    del right
    b0_t = _as_tensor(b0, image, work)[:, None]
    b1_t = _as_tensor(b1, image, work)[:, None]
    y0_t, y1_t = _as_tensor(y0, image, torch.long), _as_tensor(y1, image, torch.long)
    if not fixed_point:
        return rows.index_select(-2, y0_t).mul_(b0_t).add_(rows.index_select(-2, y1_t).mul_(b1_t))
    # OpenCV's vectorised vertical pass (VResizeLinearVec_32s8u): drop 4 bits, keep the high 16 bits of each
    # 16x16-bit product, then round away the last 2 bits.
    rows.bitwise_right_shift_(4)
    top = rows.index_select(-2, y0_t).mul_(b0_t).bitwise_right_shift_(16)
    top.add_(rows.index_select(-2, y1_t).mul_(b1_t).bitwise_right_shift_(16))
    return top.add_(2).bitwise_right_shift_(2).clamp_(0, 255).to(torch.uint8)


def _halve(image: torch.Tensor) -> torch.Tensor:
    """Exact 2x downscale: OpenCV switches INTER_LINEAR to area averaging, rounding half up on uint8."""
    if image.dtype == torch.uint8:
        s = image.to(torch.int32)
        total = s[..., 0::2, 0::2] + s[..., 1::2, 0::2] + s[..., 0::2, 1::2] + s[..., 1::2, 1::2]
        return ((total + 2) >> 2).to(torch.uint8)
    return (image[..., 0::2, 0::2] + image[..., 1::2, 0::2] + image[..., 0::2, 1::2] + image[..., 1::2, 1::2]) * 0.25


def scaled_test_size(
    height: int, width: int, scale: tuple[int, int] | None, keep_ratio: bool, ratio: float = 1.0
) -> tuple[int, int]:
    """The network-input ``(height, width)`` of an image under mmseg 0.x's test resize.

    ``scale`` is the test scale ``(a, b)`` (None: no resize). ``ratio`` is a multi-scale TTA ratio: it multiplies the
    test scale (``(int(a * r), int(b * r))``, mmseg 0.x ``MultiScaleFlipAug``), or the image size when there is no
    test scale. With ``keep_ratio=False`` the image is resized to exactly width ``a`` and height ``b`` (mmcv order).
    """
    if scale is None:
        return rescale_size(height, width, ratio)
    a, b = scale
    if ratio != 1.0:
        a, b = int(a * ratio), int(b * ratio)
    if not keep_ratio:
        return b, a
    return rescale_size(height, width, (a, b))


def resize_for_test(
    image: torch.Tensor, scale: tuple[int, int] | None, keep_ratio: bool, ratio: float = 1.0
) -> torch.Tensor:
    """`image` ``(..., H, W)`` resized to its network-input size under the test resize (`scaled_test_size`)."""
    height, width = image.shape[-2:]
    return resize_image(image, scaled_test_size(height, width, scale, keep_ratio, ratio))
