"""mmcv's rescale rule and the OpenCV-exact bilinear resize used to prepare test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplabv3p.inference.resize import rescale_size, resize_image, scaled_test_size


@pytest.mark.parametrize(
    ("hw", "scale", "expected"),
    [
        ((1024, 2048), (2048, 1024), (1024, 2048)),  # Cityscapes 512x1024 rows: unchanged
        ((1024, 2048), (2049, 1025), (1025, 2049)),  # Cityscapes 769 rows: f = 2049/2048
        ((375, 500), (2048, 512), (512, 683)),  # ADE/VOC: short side 512
        ((512, 3000), (2048, 512), (350, 2048)),  # long side bound wins
        ((100, 80), (520, 520), (520, 416)),  # small images are upscaled
        ((500, 375), (512, 2048), (683, 512)),  # (a, b) order does not matter
        ((10, 20), 1.5, (15, 30)),  # a number is the factor itself
        ((3, 5), 0.5, (2, 3)),  # int(x + 0.5) rounding
    ],
)
def test_rescale_size_follows_mmcv(hw, scale, expected):
    assert rescale_size(*hw, scale) == expected


def test_rescale_size_rejects_bad_factor():
    with pytest.raises(ValueError, match=r"scale must be a finite number > 0, got 0\.0"):
        rescale_size(10, 10, 0.0)


def test_scaled_test_size_tta_ratio_multiplies_the_test_scale():
    # mmseg 0.x MultiScaleFlipAug: scale (int(2048 * 0.75), int(512 * 0.75)) = (1536, 384), then keep-ratio.
    assert scaled_test_size(375, 500, (2048, 512), True, 0.75) == rescale_size(375, 500, (1536, 384)) == (384, 512)
    # ratio 1.75 on (2048, 512): (3584, 896)
    assert scaled_test_size(375, 500, (2048, 512), True, 1.75) == (896, 1195)
    # without a test scale the ratio rescales the image itself
    assert scaled_test_size(375, 500, None, True, 0.5) == (188, 250)
    assert scaled_test_size(375, 500, None, True) == (375, 500)
    # keep_ratio=False: exactly (w=a, h=b)
    assert scaled_test_size(375, 500, (640, 480), False) == (480, 640)
    assert scaled_test_size(375, 500, (640, 480), False, 0.5) == (240, 320)


def test_uint8_resize_is_bit_identical_to_opencv(data_dir):
    """Fixture written by benchmarks/check_cv2_resize.py with OpenCV (which the tests do not need)."""
    cases = np.load(data_dir / "cv2_resize.npz")
    n = 0
    for key in cases.files:
        if not key.startswith("in_"):
            continue
        image, expected = cases[key], cases["out_" + key[3:]]
        out = resize_image(torch.from_numpy(image).permute(2, 0, 1), expected.shape[:2])
        assert out.dtype == torch.uint8
        np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), expected, err_msg=f"case {key}")
        n += 1
    assert n >= 5


def test_uint8_resize_differs_from_plain_float_rounding(data_dir):
    """The fixed-point path matters: rounding torch's float bilinear result does not reproduce OpenCV."""
    cases = np.load(data_dir / "cv2_resize.npz")
    image, expected = cases["in_2"], cases["out_2"]
    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    naive = F.interpolate(t, size=expected.shape[:2], mode="bilinear", align_corners=False)[0]
    naive = naive.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert (naive != expected).any()


def test_float_resize_follows_the_same_geometry(data_dir):
    cases = np.load(data_dir / "cv2_resize.npz")
    for i in (0, 2, 3):
        image, expected = cases[f"in_{i}"], cases[f"out_{i}"]
        out = resize_image(torch.from_numpy(image).permute(2, 0, 1).float(), expected.shape[:2])
        assert out.dtype == torch.float32
        # OpenCV rounds uint8 results; the float result is within that rounding.
        assert np.abs(out.permute(1, 2, 0).numpy() - expected).max() <= 1.0


def test_exact_half_is_area_average_rounding_half_up():
    image = torch.tensor([[[0, 1, 2, 2], [1, 0, 2, 3]]], dtype=torch.uint8)  # (1, 2, 4)
    out = resize_image(image, (1, 2))
    assert out.tolist() == [[[1, 2]]]  # (0+1+1+0+2)>>2 = 1; (2+2+2+3+2)>>2 = 2


def test_same_size_returns_the_input_and_bad_targets_fail():
    image = torch.zeros(3, 5, 7, dtype=torch.uint8)
    assert resize_image(image, (5, 7)) is image
    with pytest.raises(ValueError, match="at least 1x1"):
        resize_image(image, (0, 7))
    with pytest.raises(TypeError, match="uint8 or floating-point"):
        resize_image(image.to(torch.int32), (3, 3))


def test_resize_batched_matches_per_image():
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 11, 13), dtype=np.uint8))
    out = resize_image(batch, (17, 8))
    assert out.shape == (2, 3, 17, 8)
    torch.testing.assert_close(out[1], resize_image(batch[1], (17, 8)), rtol=0, atol=0)
