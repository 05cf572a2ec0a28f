"""Augmentation: image/mask alignment, mmseg's resize and crop rules, photometric distortion, reproducibility."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from deeplabv3p.train.transforms import (
    AugmentSettings,
    PhotoMetricDistortion,
    RandomCrop,
    RandomResize,
    _scale_saturation,
    training_transforms,
)


def _blocky_sample(seed: int = 0, h: int = 48, w: int = 64) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """A mask of 8x8 blocks of labels 0..4 and an image whose grey level encodes the label (40 * label + 20)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 5, (h // 8, w // 8))
    mask = np.kron(blocks, np.ones((8, 8), dtype=np.int64))
    image = np.repeat((40 * mask + 20)[None], 3, axis=0).astype(np.uint8)
    return tv_tensors.Image(torch.from_numpy(image)), tv_tensors.Mask(torch.from_numpy(mask))


def _derived(image: torch.Tensor) -> torch.Tensor:
    return ((image[0].float() - 20) / 40).round().long()


def _interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label (bilinear resizing blends image values only at borders)."""
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1, 1, 1), mode="replicate")
    patches = torch.nn.functional.unfold(padded, 3).view(9, *mask.shape)
    return (patches == patches[4]).all(dim=0)


@pytest.mark.parametrize("seed", range(6))
def test_geometric_pipeline_keeps_image_and_mask_aligned(seed: int) -> None:
    image, mask = _blocky_sample(seed)
    pipeline = training_transforms(AugmentSettings(crop_size=(40, 40), scale=None, photometric=False))
    torch.manual_seed(seed)
    out_image, out_mask = pipeline(image, mask)
    assert isinstance(out_mask, tv_tensors.Mask) and out_mask.dtype == torch.int64
    assert out_image.shape[1:] == out_mask.shape
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())  # nearest: no invented labels
    inside = _interior(out_mask)
    assert inside.float().mean() > 0.3
    assert torch.equal(_derived(out_image)[inside], out_mask[inside])


def test_flip_moves_image_and_mask_together() -> None:
    image, mask = _blocky_sample(1)
    flips = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_mask = training_transforms(
            AugmentSettings(crop_size=(48, 64), ratio_range=(1.0, 1.0), photometric=False)
        )(image, mask)
        flips += torch.equal(out_mask, mask.flip(-1))
        assert torch.equal(_derived(out_image), out_mask)  # no resize, no crop: every pixel must agree
    assert 0 < flips < 8


def test_photometric_distortion_changes_only_the_image() -> None:
    image, mask = _blocky_sample(2)
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed)
        out_image, out_mask = PhotoMetricDistortion()(image, mask)
        assert out_image.dtype == torch.uint8 and isinstance(out_image, tv_tensors.Image)
        assert torch.equal(out_mask, mask)
        changed += not torch.equal(out_image, image)
    assert changed >= 4


def test_augmentation_is_reproducible_from_the_seed() -> None:
    rng = np.random.default_rng(0)
    image = tv_tensors.Image(torch.from_numpy(rng.integers(0, 256, (3, 50, 70), dtype=np.uint8)))
    mask = tv_tensors.Mask(torch.from_numpy(rng.integers(0, 4, (50, 70))))
    pipeline = training_transforms(AugmentSettings(crop_size=(32, 32), scale=(80, 60)))
    outputs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        outputs.append(pipeline(image, mask))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    assert not torch.equal(outputs[0][0], outputs[2][0])


@pytest.mark.parametrize(
    ("size", "scale", "ratio", "expected"),
    [
        ((100, 300), (2048, 512), 1.0, (512, 1536)),  # short side bound: 512 / 100
        ((100, 300), (2048, 512), 0.5, (256, 768)),  # scale (1024, 256)
        ((1024, 2048), (2048, 1024), 1.0, (1024, 2048)),  # Cityscapes at its test scale: unchanged
        ((400, 1000), (1000, 600), 1.0, (400, 1000)),  # long side bound: 1000 / 1000
        ((100, 300), None, 2.0, (200, 600)),  # no scale: the image's own size times the ratio
    ],
)
def test_random_resize_follows_mmcv_rescale(size, scale, ratio, expected) -> None:
    image = tv_tensors.Image(torch.zeros(3, *size, dtype=torch.uint8))
    out = RandomResize(scale, (ratio, ratio))(image)
    assert tuple(out.shape[1:]) == expected


def test_crop_respects_cat_max_ratio() -> None:
    mask = torch.zeros(100, 100, dtype=torch.int64)
    mask[70:90, 10:40] = 1  # a small object in a large background

    def balanced_crops(ratio: float) -> int:
        crop, count = RandomCrop(24, cat_max_ratio=ratio), 0
        for seed in range(40):
            torch.manual_seed(seed)
            window = crop(tv_tensors.Mask(mask))
            _, counts = window.unique(return_counts=True)
            count += len(counts) > 1 and counts.max() / counts.sum() < 0.75
        return count

    assert balanced_crops(0.75) >= balanced_crops(1.0) + 10


def test_crop_ignores_ignore_index_and_keeps_small_images_whole() -> None:
    mask = torch.full((10, 30), 255, dtype=torch.int64)
    out = RandomCrop((16, 16))(tv_tensors.Mask(mask))
    assert out.shape == (10, 16)
    with pytest.raises(ValueError, match="cat_max_ratio"):
        RandomCrop(8, cat_max_ratio=0)
    with pytest.raises(ValueError, match=r"size must be an int >= 1 or a pair \(h, w\) of them, got \(8, -1\)"):
        RandomCrop((8, -1))


def test_saturation_matches_hsv_reference() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 1, 64), dtype=np.uint8)
    for factor in (0.5, 1.3, 3.0):
        ours = _scale_saturation(torch.from_numpy(pixels), factor).numpy()
        for j in range(pixels.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*(pixels[:, 0, j] / 255.0))
            expected = np.array(colorsys.hsv_to_rgb(h, min(s * factor, 1.0), v)) * 255
            assert np.abs(ours[:, 0, j] - expected).max() <= 1.0
