"""Training on more than three bands: the dataset reads multi-band TIFFs as predict does, the loader and the
augmentation carry float 16-bit data, fit/evaluate/the CLI run end to end, and band counts are checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import tiny_model
from PIL import Image
from torchvision import tv_tensors
from train_helpers import TINY, one_thread  # noqa: F401  (one_thread: autouse fixture)

import deeplabv3p
from deeplabv3p import cli
from deeplabv3p import train as training
from deeplabv3p.inference.images import ImageSpec, read_image
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.loader import AugmentedDataset, PadCollate
from deeplabv3p.train.samples import sample_spec
from deeplabv3p.train.transforms import PhotoMetricDistortion

tifffile = pytest.importorskip("tifffile")
CLASSES = ["water", "field", "forest"]
PER_BAND = {"mean": (40.0, 45.0, 50.0, 60.0), "std": (20.0, 21.0, 22.0, 25.0)}


def _scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4-band uint16 scene whose NIR band alone tells the classes apart (what a 4-band model must learn)."""
    mask = np.zeros((size, size), np.uint8)
    mask[:, size // 3 :] = 1
    mask[size // 2 :, 2 * size // 3 :] = 2
    bands = rng.integers(2000, 12000, size=(size, size, 4), dtype=np.uint16)
    bands[..., 3] = np.choose(mask, [3000, 20000, 40000]).astype(np.uint16) + rng.integers(0, 500, (size, size)).astype(
        np.uint16
    )
    return bands, mask


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bands")
    rng = np.random.default_rng(0)
    (root / "classes.json").write_text(json.dumps(CLASSES))
    for split, count in (("train", 4), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(count):
            bands, mask = _scene(rng, 48)
            tifffile.imwrite(root / "images" / split / f"{i}.tif", np.moveaxis(bands, -1, 0), photometric="minisblack")
            Image.fromarray(mask).save(root / "masks" / split / f"{i}.png")
    return root


def test_dataset_reads_multiband_tiffs_as_predict_does(data_root):
    dataset = SegmentationDataset(data_root, "train", in_chans=4)
    raw, mask = dataset.load(0)
    assert raw.shape == (48, 48, 4) and raw.dtype == np.uint16 and mask.shape == (48, 48)
    image, target = dataset[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32 and image.shape == (4, 48, 48)
    torch.testing.assert_close(image.as_subclass(torch.Tensor), read_image(raw, ImageSpec(4)))
    assert target.dtype == torch.int64


def test_dataset_band_count_mismatch_names_both_counts(data_root, tmp_path):
    with pytest.raises(ValueError, match="has 4 bands but the model takes in_chans=5"):
        SegmentationDataset(data_root, "train", in_chans=5).load(0)
    with pytest.raises(ValueError, match="in_chans must be an int >= 1"):
        SegmentationDataset(data_root, "train", in_chans=0)


def test_an_rgb_dataset_refuses_rgb_nir_tiffs_instead_of_reading_a_page_or_dropping_nir(data_root, tmp_path):
    """The scenes are RGB + NIR, one page per band: an RGB dataset read the first page as gray (issue 18)."""
    with pytest.raises(ValueError, match=r"0\.tif: the TIFF has 4 bands and does not declare the 4th alpha"):
        SegmentationDataset(data_root, "train").load(0)
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "masks" / "train").mkdir(parents=True)
    bands, mask = _scene(np.random.default_rng(1), 24)
    rgb = (bands[..., :3] >> 8).astype(np.uint8)
    tifffile.imwrite(tmp_path / "images" / "train" / "a.tif", np.moveaxis(rgb, -1, 0), photometric="minisblack")
    Image.fromarray(mask).save(tmp_path / "masks" / "train" / "a.png")
    raw, _ = SegmentationDataset(tmp_path, "train", classes=3).load(0)
    np.testing.assert_array_equal(raw, rgb)  # three pages: the three bands, not the first one three times


def test_16_bit_rgb_files_are_read_with_the_predict_rule(tmp_path):
    """A 16-bit PNG in an RGB dataset keeps its high byte, as predict reads it (not PIL's clipping to 255)."""
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "masks" / "train").mkdir(parents=True)
    values = np.array([[0, 300, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "images" / "train" / "a.png")
    Image.fromarray(np.zeros((1, 4), np.uint8)).save(tmp_path / "masks" / "train" / "a.png")
    image, _ = SegmentationDataset(tmp_path, "train", classes=2)[0]
    assert image.dtype == torch.uint8 and image[0, 0].tolist() == [0, 1, 156, 255]


def test_loader_and_augmentation_carry_float_bands():
    rng = np.random.default_rng(1)
    x = tv_tensors.Image(torch.from_numpy(rng.uniform(0, 255, (4, 16, 16)).astype(np.float32)))
    distort = PhotoMetricDistortion()
    params = {"brightness": 20.0, "contrast_first": True, "contrast": 1.2, "saturation": 0.5, "hue": 5}
    out = distort.transform(x, params).as_subclass(torch.Tensor)
    expected = ((x.as_subclass(torch.Tensor) + 20.0).clamp(0, 255) * 1.2).clamp(0, 255)  # no colour steps on 4 bands
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    rgb = tv_tensors.Image(torch.from_numpy(rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)))
    assert distort.transform(rgb, params).dtype == torch.uint8  # RGB uint8: mmseg's truncating steps, as before
    images, masks, sizes = PadCollate((20, 20))(
        [(x.as_subclass(torch.Tensor), torch.zeros(16, 16, dtype=torch.long))] * 2
    )
    assert images.dtype == torch.float32 and images.shape == (2, 4, 20, 20) and sizes.tolist() == [[16, 16]] * 2
    assert bool((masks[:, 16:] == 255).all()) and bool((images[:, :, 16:] == 0).all())
    zeros = [(torch.zeros(4, 8, 8), torch.zeros(8, 8, dtype=torch.long))]  # a no-data tile is not "0..1 scale"
    assert AugmentedDataset(zeros, None, sample_spec(4))[(0, 0)][0].dtype == torch.float32
    with pytest.raises(ValueError, match=r"sample 0: a float image whose values all lie in \[0, 1\]"):
        half = [(torch.full((4, 8, 8), 0.5), torch.zeros(8, 8, dtype=torch.long))]
        AugmentedDataset(half, None, sample_spec(4))[(0, 0)]
    with pytest.raises(ValueError, match="different band counts"):
        PadCollate()([(torch.zeros(4, 4, 4), torch.zeros(4, 4)), (torch.zeros(3, 4, 4), torch.zeros(4, 4))])


def test_fit_and_evaluate_a_4_band_model_on_16_bit_tiffs(data_root, tmp_path):
    model = tiny_model(num_classes=3, in_chans=4, **PER_BAND)
    train_set = SegmentationDataset(data_root, "train", in_chans=4)
    val_set = SegmentationDataset(data_root, "val", in_chans=4)
    result = training.fit(model, train_set, val_set, out=tmp_path / "run", **{**TINY, "iters": 6, "lr": 0.05})
    assert result.metrics is not None and 0.0 <= result.metrics["mIoU"] <= 100.0
    saved = deeplabv3p.create_model(str(result.best_path))
    assert saved.config.in_chans == 4 and saved.pretrained_cfg.mean == PER_BAND["mean"]
    metrics = training.evaluate(saved, val_set, progress=False)
    assert metrics["mIoU"] == pytest.approx(result.best_metrics["mIoU"])  # evaluate reads the files as fit did


def test_fit_and_evaluate_refuse_a_dataset_read_for_another_band_count(data_root, tmp_path):
    model, rgb_reading = tiny_model(num_classes=3, in_chans=4), SegmentationDataset(data_root, "train")
    with pytest.raises(ValueError, match="training set reads 3-band images but the model takes in_chans=4"):
        training.fit(model, rgb_reading, out=tmp_path, **TINY)
    with pytest.raises(ValueError, match=r"evaluation set reads 3-band .* SegmentationDataset\(\.\.\., in_chans=4\)"):
        training.evaluate(model, rgb_reading, progress=False)


def test_cli_train_and_evaluate_with_in_chans(data_root, tmp_path, capsys):
    model_kwargs = ["encoder=resnet18", "encoder_kwargs={'channels': (8, 16, 32, 64)}", "decoder_channels=16"]
    model_kwargs += ["low_level_channels=8", "in_chans=4", f"mean={PER_BAND['mean']}", f"std={PER_BAND['std']}"]
    args = ["train", "--data", str(data_root), "--model", "deeplabv3plus", "--out", str(tmp_path / "run")]
    args += ["--iters", "2", "--batch-size", "2", "--crop-size", "32", "32", "--num-workers", "0", "--no-progress"]
    assert cli.main([*args, "--model-kwargs", *model_kwargs]) == 0, capsys.readouterr().err
    best = tmp_path / "run" / "best"
    assert json.loads((best / "config.json").read_text())["model_config"]["in_chans"] == 4
    code = cli.main(["evaluate", "--data", str(data_root), "--model", str(best), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "mIoU" in capsys.readouterr().out
