"""Every accepted image form, the value rules (grayscale, alpha, 16-bit, float) and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deeplabv3p.inference.images import ImageItem, ImageSpec, expand_inputs, read_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
CHW = torch.from_numpy(RGB).permute(2, 0, 1)


def test_rgb_forms_read_the_same_pixels(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(RGB).save(path)
    forms = [
        path,
        str(path),
        Image.fromarray(RGB),
        RGB,
        CHW,
        CHW.float() / 255,
        RGB.astype(np.float32) / 255,
        RGB.astype(np.uint16) << 8,
    ]
    for form in forms:
        out = read_image(form)
        assert out.shape == (3, 6, 8)
        torch.testing.assert_close(out.float(), CHW.float(), atol=1e-4, rtol=0, msg=f"form {type(form)}")


def test_uint8_stays_uint8_and_float_is_scaled_not_rounded():
    assert read_image(RGB).dtype == torch.uint8
    out = read_image(np.full((2, 2, 3), 0.5, dtype=np.float32))
    assert out.dtype == torch.float32 and out[0, 0, 0].item() == 127.5


def test_grayscale_is_repeated_and_alpha_dropped():
    gray = RNG.integers(0, 256, size=(5, 4), dtype=np.uint8)
    for form in (gray, gray[..., None], Image.fromarray(gray), torch.from_numpy(gray), torch.from_numpy(gray)[None]):
        out = read_image(form)
        assert out.shape == (3, 5, 4)
        for c in range(3):
            np.testing.assert_array_equal(out[c].numpy(), gray)
    rgba = np.concatenate([RGB, np.zeros((6, 8, 1), np.uint8)], axis=-1)  # fully transparent: not composited
    for form in (rgba, Image.fromarray(rgba, "RGBA"), torch.from_numpy(rgba).permute(2, 0, 1)):
        np.testing.assert_array_equal(read_image(form).numpy(), CHW.numpy())


def test_16_bit_keeps_the_high_byte(tmp_path):
    values = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    expected = [0, 0, 1, 255]
    assert read_image(values)[0].flatten().tolist() == expected
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # a 16-bit grayscale PNG
    assert read_image(path)[1].flatten().tolist() == expected


def test_palette_image_and_exif_orientation(tmp_path):
    pal = Image.fromarray(RGB).convert("P")
    np.testing.assert_array_equal(read_image(pal).numpy(), np.asarray(pal.convert("RGB")).transpose(2, 0, 1))
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(RGB).save(path, exif=exif, quality=100)
    assert read_image(path).shape == (3, 8, 6)  # file: shown orientation
    with Image.open(path) as im:
        assert read_image(im).shape == (3, 6, 8)  # in-memory PIL image: as given


def test_batches_and_lists_expand_per_image(tmp_path):
    items, batched = expand_inputs(torch.stack([CHW, CHW]))
    assert batched and [i.name for i in items] == ["inputs[0]", "inputs[1]"]
    items, batched = expand_inputs(np.stack([RGB, RGB, RGB]))
    assert batched and len(items) == 3 and read_image(items[2].source).shape == (3, 6, 8)
    items, batched = expand_inputs(RGB)
    assert not batched and len(items) == 1
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    items, batched = expand_inputs([tmp_path, RGB])
    assert batched and [i.name for i in items] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), "inputs[1]"]


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([], ValueError, "empty list"),
        (np.zeros((3, 6, 8), np.uint8), ValueError, "channels-last"),
        (torch.zeros(6, 8, 3, dtype=torch.uint8), ValueError, r"permute\(2, 0, 1\)"),
        (np.zeros((6, 8, 5), np.uint8), ValueError, "1, 3 or 4 channels"),
        (np.zeros((2, 2, 6, 8, 3), np.uint8), ValueError, r"\(H, W, 3\)"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "empty image"),
        (np.zeros((6, 8, 3), np.int32), TypeError, "int32"),
        (torch.zeros(3, 6, 8, dtype=torch.int64), TypeError, "int64"),
        (np.zeros((6, 8, 3), bool), TypeError, "bool"),
        (42, TypeError, "unsupported image type int"),
        ([RGB, "nope/missing.png"], FileNotFoundError, r"inputs\[1\].*missing.png"),
    ],
)
def test_bad_inputs_fail_clearly_before_reading(value, error, match):
    with pytest.raises(error, match=match):
        expand_inputs(value)


def test_float_out_of_range_and_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 1\].*max 255"):
        read_image(np.full((4, 4, 3), 255.0, dtype=np.float32), name="img")
    with pytest.raises(ValueError, match="min -2"):
        read_image(torch.full((3, 4, 4), -2.0))
    with pytest.raises(ValueError, match="nan"):
        read_image(torch.full((3, 4, 4), float("nan")))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image file.*broken\.png"):
        read_image(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        expand_inputs(tmp_path / "empty")


def test_one_spec_decides_the_float_scale():
    byte = ImageSpec(3, "0..255")  # a dataset's samples
    image = torch.full((3, 4, 4), 200.0, dtype=torch.float64)
    assert torch.equal(read_image(image, byte), torch.full((3, 4, 4), 200.0))  # taken as is, as float32
    assert read_image(torch.zeros(3, 4, 4), byte).dtype == torch.float32  # an all-zero tile is not "0..1"
    with pytest.raises(ValueError, match=r"^sample 3: a float image whose values all lie in \[0, 1\]"):
        read_image(image / 255, byte, "sample 3")
    with pytest.raises(ValueError, match=r"0\.\.255 scale, got min -2"):
        read_image(torch.full((3, 4, 4), -2.0), byte)
    with pytest.raises(ValueError, match=r"got min 200 and max 200"):
        read_image(image, ImageSpec())  # the same image as a predict input: floats in [0, 1]
    with pytest.raises(TypeError, match=r"int32.*floating point on the 0\.\.255 scale"):
        read_image(image.int(), byte)
    with pytest.raises(ValueError, match="floats must be one of"):
        ImageSpec(3, "0..100")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_chans"):
        ImageSpec(0)


def test_an_item_keeps_its_own_rule_through_expand_inputs():
    item = ImageItem(torch.full((3, 4, 4), 200.0), "sample 0", ImageSpec(3, "0..255"))
    items, batched = expand_inputs([item, RGB])
    assert items[0] is item and items[1].spec == ImageSpec() and batched
    assert items[0].read().max() == 200.0
    with pytest.raises(ValueError, match="sample 0: read for in_chans=3 but the model takes in_chans=4"):
        expand_inputs(item, ImageSpec(4))


def test_oversized_files_fail_with_a_hint(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        read_image(path)
