"""SegmentationDataset: the folder layout, classes.json, explicit pairs, mmseg's label rules and the error cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from deeplabv3p.inference.images import read_image
from deeplabv3p.train.classes import read_classes_file
from deeplabv3p.train.datasets import SegmentationDataset


def _write(root: Path, split: str, name: str, image: np.ndarray, mask: np.ndarray | None, suffix: str = ".png") -> None:
    (root / "images" / split / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "masks" / split / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / split / f"{name}{suffix}")
    if mask is not None:
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / split / f"{name}.png")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        _write(
            tmp_path, "train", f"img{i}", rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), rng.integers(0, 3, (6, 8))
        )
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    return tmp_path


def test_folder_layout(root: Path) -> None:
    ds = SegmentationDataset(root, "train")
    assert len(ds) == 3 and ds.num_classes == 3 and ds.classes == ("a", "b", "c")
    image, mask = ds[1]
    assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
    assert image.shape == (3, 6, 8) and image.dtype == torch.uint8
    assert mask.shape == (6, 8) and mask.dtype == torch.int64
    stored = np.asarray(Image.open(root / "images" / "train" / "img1.png"))
    assert np.array_equal(image.permute(1, 2, 0).numpy(), stored)
    assert np.array_equal(mask.numpy(), np.asarray(Image.open(root / "masks" / "train" / "img1.png")))


def test_jpeg_images_nested_folders_and_palette_masks(tmp_path: Path) -> None:
    mask = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    _write(tmp_path, "val", "city/a", np.zeros((2, 2, 3), np.uint8), None, suffix=".jpg")
    indexed = Image.fromarray(mask, mode="P")
    indexed.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    indexed.save(tmp_path / "masks" / "val" / "city" / "a.png")
    classes = {"classes": ["bg", "red", "green"], "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0]]}
    (tmp_path / "classes.json").write_text(json.dumps(classes))
    ds = SegmentationDataset(tmp_path, "val")
    assert ds.palette == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    assert np.array_equal(ds[0][1].numpy(), mask)  # palette PNGs are read as indices, not colours


def test_images_are_read_as_predict_reads_them(tmp_path: Path) -> None:
    """Every extension predict accepts trains too (WebP included), and pixels come out as predict sees them:
    16-bit PNGs keep their high byte (OpenCV, mmseg) rather than PIL's clipping to 255."""
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 3, (6, 8))
    _write(tmp_path, "train", "photo", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), mask, suffix=".webp")
    _write(tmp_path, "train", "deep", rng.integers(0, 65536, (6, 8), dtype=np.uint16), mask)
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    ds = SegmentationDataset(tmp_path, "train")
    assert sorted(p.name for p, _ in ds.samples) == ["deep.png", "photo.webp"]
    for index, (path, _) in enumerate(ds.samples):
        expected = read_image(path)
        assert torch.equal(ds[index][0].as_subclass(torch.Tensor), expected)  # what training sees
        assert torch.equal(read_image(ds.read_image(index)), expected)  # what evaluate hands predict: the same
    deep = ds.samples.index(next(pair for pair in ds.samples if pair[0].name == "deep.png"))
    raw = np.asarray(Image.open(ds.samples[deep][0]), dtype=np.int64)
    assert np.array_equal(ds[deep][0][0].numpy(), raw >> 8)
    assert np.array_equal(ds.read_image(deep)[..., 0], raw)  # read_image / load: the pixels as stored


def test_explicit_pairs(root: Path) -> None:
    pairs = [(root / "images/train/img0.png", root / "masks/train/img0.png")]
    ds = SegmentationDataset(pairs=pairs, classes=3)
    assert len(ds) == 1 and ds.classes == ("class_0", "class_1", "class_2")
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        SegmentationDataset(pairs=[(root / "images/train/img0.png", root / "nope.png")], classes=3)
    with pytest.raises(ValueError, match="classes="):
        SegmentationDataset(pairs=pairs)
    with pytest.raises(ValueError, match="exactly one"):
        SegmentationDataset(root, pairs=pairs)


def test_reduce_zero_label_follows_mmseg(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2], [3, 255, 1]])
    _write(tmp_path, "train", "x", np.zeros((2, 3, 3), np.uint8), mask)
    ds = SegmentationDataset(tmp_path, "train", classes=["one", "two", "three"], reduce_zero_label=True)
    assert ds.read_mask(0).tolist() == [[255, 0, 1], [2, 255, 0]]


def test_classes_file_forms_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classes": ["x", "y"]}))
    assert read_classes_file(path) == (("x", "y"), ())
    for bad, message in (
        ({"classes": ["x"], "colors": []}, "expected keys"),
        (["x", "x"], "unique"),
        ({"classes": ["x", "y"], "palette": [[0, 0, 0]]}, "1 colours for 2 classes"),
        ({"classes": ["x"], "palette": [[0, 0, 300]]}, "0..255"),
        ([], "non-empty"),
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            read_classes_file(path)
    path.write_text("[oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_classes_file(path)


def test_missing_classes_file(root: Path) -> None:
    (root / "classes.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"classes\.json"):
        SegmentationDataset(root, "train")


def test_missing_mask_names_the_file(root: Path) -> None:
    (root / "masks" / "train" / "img2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 3 images .*masks/train/img2\.png"):
        SegmentationDataset(root, "train")


def test_empty_and_unknown_split(root: Path) -> None:
    (root / "images" / "empty").mkdir(parents=True)
    with pytest.raises(ValueError, match="split 'empty' is empty"):
        SegmentationDataset(root, "empty")
    with pytest.raises(FileNotFoundError, match=r"splits found .*\['empty', 'train'\]"):
        SegmentationDataset(root, "test")


def test_size_mismatch_names_both_files(root: Path) -> None:
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(root / "masks" / "train" / "img1.png")
    ds = SegmentationDataset(root, "train")
    with pytest.raises(ValueError, match=r"img1\.png' is 6x8 but its mask .*img1\.png' is 5x8 \(height x width\)"):
        ds[1]


def test_labels_out_of_range_name_the_file_and_hint(root: Path) -> None:
    Image.fromarray(np.full((6, 8), 3, np.uint8)).save(root / "masks" / "train" / "img0.png")
    ds = SegmentationDataset(root, "train")
    with pytest.raises(ValueError, match=r"img0\.png' holds label\(s\) \[3\] outside the 3 classes") as err:
        ds[0]
    assert "reduce_zero_label=True" in str(err.value)
    ds[1]  # other samples still load
    with pytest.raises(ValueError, match=r"1 of 3 samples have problems:\n  mask .*img0\.png"):
        ds.verify()


def test_rgb_mask_is_refused(root: Path) -> None:
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "masks" / "train" / "img0.png")
    with pytest.raises(ValueError, match="single-channel index images"):
        SegmentationDataset(root, "train")[0]


def test_duplicate_stems_and_bad_arguments(root: Path) -> None:
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images" / "train" / "img0.jpg")
    with pytest.raises(ValueError, match="two images share the name 'img0'"):
        SegmentationDataset(root, "train")
    (root / "images" / "train" / "img0.jpg").unlink()
    with pytest.raises(ValueError, match="collides"):
        SegmentationDataset(root, "train", ignore_index=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SegmentationDataset(root / "nowhere", "train")
    with pytest.raises(TypeError, match="transforms must be callable"):
        SegmentationDataset(root, "train", transforms="flip")


def test_transforms_are_applied(root: Path) -> None:
    ds = SegmentationDataset(root, "train", transforms=lambda image, mask: (image[:, :2], mask[:2]))
    image, mask = ds[0]
    assert image.shape == (3, 2, 8) and mask.shape == (2, 8)
