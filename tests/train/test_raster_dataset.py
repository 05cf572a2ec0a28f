"""Training on large rasters without cutting patches first (``SegmentationDataset(..., layout="rasters")``): grids
checked, random windows in bounds and seeded, grid windows covering every pixel once, nodata ignored, and
`fit` / `evaluate` (API and CLI) on windows, evaluation equal to that of the same windows cut into patches."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nets import tiny_model
from PIL import Image
from train_helpers import one_thread  # noqa: F401  (one_thread: autouse fixture)

pytest.importorskip("rasterio")

from raster_helpers import ORIGIN, PIXEL, synthetic_pixels, write_geotiff

from deeplabv3p.cli import main
from deeplabv3p.pretrained.config import PretrainedCfg
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.evaluation import evaluate
from deeplabv3p.train.loader import seeded
from deeplabv3p.train.metrics import ConfusionMatrix
from deeplabv3p.train.windows import RandomWindows, grid_windows

CLASSES = ["dark", "mid", "bright"]
LABEL_NODATA = 9
IMAGE_NODATA_ROWS = slice(60, 66)  # rows where the image is nodata (every band 0)


def _labels_of(pixels: np.ndarray) -> np.ndarray:
    """Class ids from the first band (0..2), learnable from the image."""
    return np.minimum(pixels[0] // 86, 2).astype(np.uint8)


def _write_pair(root: Path, split: str, name: str, height: int, width: int, seed: int, **label_profile) -> None:
    """An RGB uint8 image raster with nodata 0 (a band of rows of it blank) and a uint8 label raster on its grid
    with nodata `LABEL_NODATA` over its first 5 rows."""
    pixels = synthetic_pixels(height, width, 3, "uint8", seed=seed)
    pixels[pixels == 0] = 1
    labels = _labels_of(pixels)[None].copy()
    pixels[:, IMAGE_NODATA_ROWS, :] = 0
    labels[:, :5, :] = LABEL_NODATA
    for folder in ("images", "masks"):
        (root / folder / split).mkdir(parents=True, exist_ok=True)
    write_geotiff(root / "images" / split / f"{name}.tif", pixels, nodata=0)
    write_geotiff(root / "masks" / split / f"{name}.tif", labels, **{"nodata": LABEL_NODATA, **label_profile})


def _expected_labels(root: Path, split: str, name: str) -> np.ndarray:
    """The label raster read whole, nodata of either raster as 255 (what the windows must add up to)."""
    import rasterio

    with rasterio.open(root / "masks" / split / f"{name}.tif") as src:
        labels = src.read(1).astype(np.int64)
    labels[labels == LABEL_NODATA] = 255
    labels[IMAGE_NODATA_ROWS, :] = 255
    return labels


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rasters")
    (folder / "classes.json").write_text(json.dumps(CLASSES))
    _write_pair(folder, "train", "a", 96, 80, seed=1)
    _write_pair(folder, "train", "b", 40, 52, seed=2)
    _write_pair(folder, "val", "c", 70, 90, seed=3)
    return folder


def test_grid_windows_cover_every_pixel_exactly_once() -> None:
    sizes = [(70, 50), (64, 64), (10, 7)]
    counts = [np.zeros(s, dtype=np.int64) for s in sizes]
    for w in grid_windows(sizes, (32, 24)):
        height, width = sizes[w.raster]
        assert min(height, 16) <= w.height <= 32 and min(width, 12) <= w.width <= 24  # no thin edge slivers
        counts[w.raster][w.y : w.y + w.height, w.x : w.x + w.width] += 1
    assert all((c == 1).all() for c in counts)


def test_grid_samples_add_up_to_the_rasters_with_nodata_ignored(root: Path) -> None:
    val = SegmentationDataset(root, "val", layout="rasters", window=32)
    assert val.rasters is not None and val.rasters.sampling == "grid"
    assert len(val) == 3 * 3  # 70x90 in 32x32 windows
    labels = np.full((70, 90), -1, dtype=np.int64)
    image = np.zeros((70, 90, 3), dtype=np.uint8)
    for i, window in enumerate(val.rasters.grid):
        tile, mask = val.load(i)
        assert (tile.shape[:2], mask.shape) == ((window.height, window.width),) * 2
        assert val.image_size(i) == mask.shape
        labels[window.y : window.y + window.height, window.x : window.x + window.width] = mask
        image[window.y : window.y + window.height, window.x : window.x + window.width] = tile
    np.testing.assert_array_equal(labels, _expected_labels(root, "val", "c"))  # label and image nodata -> 255
    import rasterio

    with rasterio.open(root / "images" / "val" / "c.tif") as src:
        np.testing.assert_array_equal(image, np.moveaxis(src.read(), 0, -1))
    sample_image, sample_mask = val[4]  # the network's sample: the in-memory image rule
    assert sample_image.dtype == torch.uint8 and sample_image.shape == (3, *val.image_size(4))
    torch.testing.assert_close(sample_mask, torch.from_numpy(val.load(4)[1]))


def test_a_margin_widens_the_image_and_ignores_its_labels(root: Path) -> None:
    val = SegmentationDataset(root, "val", layout="rasters", window=32, margin=5)
    assert val.rasters is not None and len(val) == 9
    expected = _expected_labels(root, "val", "c")
    counted = np.zeros((70, 90), dtype=np.int64)
    for i, core in enumerate(val.rasters.grid):
        image, mask = val.load(i)
        y1, x1 = max(0, core.y - 5), max(0, core.x - 5)
        y2, x2 = min(70, core.y + core.height + 5), min(90, core.x + core.width + 5)
        assert image.shape[:2] == mask.shape == (y2 - y1, x2 - x1) == val.image_size(i)
        inside = np.zeros(mask.shape, dtype=bool)
        inside[core.y - y1 : core.y - y1 + core.height, core.x - x1 : core.x - x1 + core.width] = True
        assert (mask[~inside] == 255).all()
        np.testing.assert_array_equal(mask[inside], expected[y1:y2, x1:x2][inside])
        counted[y1:y2, x1:x2] += mask != 255
    np.testing.assert_array_equal(counted, (expected != 255).astype(np.int64))  # each labelled pixel once
    with pytest.raises(ValueError, match="margin applies to sampling='grid'"):
        SegmentationDataset(root, "train", layout="rasters", margin=5)


def test_random_windows_lie_inside_and_follow_the_seed_and_the_areas() -> None:
    sizes = [(70, 50), (20, 30)]
    sampler = RandomWindows(sizes, (32, 32))
    draws = [sampler.draw(np.random.default_rng(5)) for _ in range(3)]
    assert len(set(draws)) == 1  # one seed, one window
    rng = np.random.default_rng(0)
    windows = [sampler.draw(rng) for _ in range(2000)]
    for w in windows:
        height, width = sizes[w.raster]
        assert (w.height, w.width) == (min(32, height), min(32, width))
        assert 0 <= w.y <= height - w.height and 0 <= w.x <= width - w.width
    share = sum(w.raster == 0 for w in windows) / len(windows)
    assert share == pytest.approx(3500 / 4100, abs=0.03)  # weighted by area
    assert len({(w.y, w.x) for w in windows if w.raster == 0}) > 100  # spread over the raster


def test_random_samples_are_reproducible_new_per_seed_and_never_unlabelled(root: Path) -> None:
    train = SegmentationDataset(root, "train", layout="rasters", window=24, samples_per_epoch=5)
    assert train.rasters is not None and train.rasters.sampling == "random" and len(train) == 5

    def drawn(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        with seeded(seed):
            return train[3]

    first, again, other = drawn(11), drawn(11), drawn(12)
    torch.testing.assert_close(first[0], again[0])
    torch.testing.assert_close(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    for seed in range(20):
        image, mask = drawn(seed)
        assert image.shape == (3, 24, 24)
        assert bool((mask != 255).any())
        assert set(torch.unique(mask).tolist()) <= {0, 1, 2, 255}


def test_windows_with_no_labelled_pixel_are_drawn_again(tmp_path: Path) -> None:
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    pixels = synthetic_pixels(96, 96, 3, "uint8", seed=4)
    labels = np.full((1, 96, 96), LABEL_NODATA, dtype=np.uint8)
    labels[0, 64:, 64:] = 1  # only the bottom-right corner is labelled
    for folder, data, nodata in (("images", pixels, None), ("masks", labels, LABEL_NODATA)):
        (tmp_path / folder / "train").mkdir(parents=True)
        write_geotiff(tmp_path / folder / "train" / "x.tif", data, nodata=nodata)
    train = SegmentationDataset(tmp_path, "train", layout="rasters", window=16)
    for seed in range(10):
        with seeded(seed):
            assert bool((train[0][1] == 1).any())
    write_geotiff(tmp_path / "masks" / "train" / "x.tif", np.full_like(labels, LABEL_NODATA), nodata=LABEL_NODATA)
    empty = SegmentationDataset(tmp_path, "train", layout="rasters", window=16)
    with pytest.raises(ValueError, match=r"held no labelled pixel.*x\.tif"):
        empty[0]


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"transform": None}, "500000.5"),  # the labels shifted by a pixel
        ({"crs": "EPSG:32633"}, "UTM zone 33N"),
        ({"size": True}, "70x89"),
    ],
)
def test_labels_on_another_grid_are_refused_naming_both_files_and_grids(tmp_path, change, shown) -> None:
    from rasterio.transform import Affine

    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    _write_pair(tmp_path, "val", "c", 70, 90, seed=3)
    labels = np.zeros((1, 70, 89 if "size" in change else 90), dtype=np.uint8)
    profile: dict = {}
    if "transform" in change:
        profile["transform"] = Affine(PIXEL, 0.0, ORIGIN[0] + PIXEL, 0.0, -PIXEL, ORIGIN[1])
    path = write_geotiff(tmp_path / "masks" / "val" / "c.tif", labels, crs=change.get("crs", "EPSG:32632"), **profile)
    with pytest.raises(ValueError, match="not on the same grid") as raised:
        SegmentationDataset(tmp_path, "val", layout="rasters", window=32)
    message = str(raised.value)
    assert str(path) in message and str(tmp_path / "images" / "val" / "c.tif") in message
    assert shown in message and "70x90" in message


def test_label_rasters_must_hold_one_band_of_class_ids(tmp_path: Path) -> None:
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    _write_pair(tmp_path, "val", "c", 40, 40, seed=3)
    masks = tmp_path / "masks" / "val" / "c.tif"
    write_geotiff(masks, np.zeros((1, 40, 40), dtype=np.float32))
    with pytest.raises(TypeError, match=r"c\.tif.*float32.*uint8 or uint16"):
        SegmentationDataset(tmp_path, "val", layout="rasters")
    write_geotiff(masks, np.zeros((3, 40, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"c\.tif.* has 3 bands"):
        SegmentationDataset(tmp_path, "val", layout="rasters")
    write_geotiff(masks, np.full((1, 40, 40), 7, dtype=np.uint8))
    bad = SegmentationDataset(tmp_path, "val", layout="rasters", window=32)
    with pytest.raises(ValueError, match=r"c\.tif \(rows 0:20, columns 0:20\)' holds label\(s\) \[7\]"):
        bad.load(0)
    assert "[7]" in (bad.sample_problem(1) or "")


def test_raster_options_and_the_missing_extra(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"\['window'\] apply to layout='rasters' only"):
        SegmentationDataset(root, "train", layout="folder", window=32)
    with pytest.raises(ValueError, match="sampling must be one of"):
        SegmentationDataset(root, "train", layout="rasters", sampling="sliding")
    with pytest.raises(ValueError, match="samples_per_epoch applies to sampling='random'"):
        SegmentationDataset(root, "val", layout="rasters", samples_per_epoch=3)
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ImportError, match=r"layout='rasters'.*deeplabv3p\[geo\]"):
        SegmentationDataset(root / "nowhere", "train", layout="rasters")  # before the folder is looked at


def test_a_dataset_sent_to_a_worker_opens_its_own_rasters(root: Path) -> None:
    val = SegmentationDataset(root, "val", layout="rasters", window=32)
    first = val.load(0)  # opens the pair in this process
    assert val.rasters is not None and val.rasters._open
    copy = pickle.loads(pickle.dumps(val))
    assert copy.rasters is not None and not copy.rasters._open
    for a, b in zip(copy.load(0), first, strict=True):
        np.testing.assert_array_equal(a, b)
    loader = torch.utils.data.DataLoader(val, batch_size=None, num_workers=1)  # a forked worker reads too
    masks = [mask for _, mask in loader]
    torch.testing.assert_close(masks[5], torch.from_numpy(val.load(5)[1]))


def _cut_into_patches(root: Path, val: SegmentationDataset, out: Path) -> Path:
    """The validation raster read whole with rasterio and cut at the grid's windows into an ordinary folder dataset
    of PNG patches (nodata labels as 255): the reference evaluation, read without the windowed reader."""
    import rasterio

    assert val.rasters is not None
    with rasterio.open(root / "images" / "val" / "c.tif") as src:
        image = np.moveaxis(src.read(), 0, -1)
    labels = _expected_labels(root, "val", "c")
    (out / "images" / "val").mkdir(parents=True)
    (out / "masks" / "val").mkdir(parents=True)
    (out / "classes.json").write_text(json.dumps(CLASSES))
    for i, w in enumerate(val.rasters.grid):
        rows, cols = slice(w.y, w.y + w.height), slice(w.x, w.x + w.width)
        Image.fromarray(image[rows, cols]).save(out / "images" / "val" / f"{i:03d}.png")
        Image.fromarray(labels[rows, cols].astype(np.uint8), mode="L").save(out / "masks" / "val" / f"{i:03d}.png")
    return out


class _PixelRule(torch.nn.Module):
    """Stands in for a model: labels from the second band by `_labels_of`'s rule (right where it agrees with the
    first band, wrong elsewhere), so any misplaced window or pixel changes the confusion matrix."""

    num_classes = len(CLASSES)

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg = PretrainedCfg(num_classes=len(CLASSES))

    def predict(self, image: np.ndarray, **kwargs) -> SimpleNamespace:
        assert image.dtype == np.uint8 and image.ndim == 3  # the window as stored, like an image file
        return SimpleNamespace(labels=_labels_of(np.moveaxis(image, -1, 0)[1:]))


def test_evaluate_on_grid_windows_counts_every_pixel_as_the_whole_raster(root: Path, tmp_path: Path) -> None:
    import rasterio

    val = SegmentationDataset(root, "val", layout="rasters", window=32)
    patches = SegmentationDataset(_cut_into_patches(root, val, tmp_path / "patches"), "val")
    with rasterio.open(root / "images" / "val" / "c.tif") as src:
        whole = _PixelRule().predict(np.moveaxis(src.read(), 0, -1)).labels
    matrix = ConfusionMatrix(len(CLASSES))
    matrix.update(torch.from_numpy(whole), torch.from_numpy(_expected_labels(root, "val", "c")))
    reference = matrix.compute(CLASSES)  # the whole raster in memory, nodata ignored
    assert 0 < reference["mIoU"] < 100
    with_context = SegmentationDataset(root, "val", layout="rasters", window=32, margin=8)
    for dataset in (val, patches, with_context):
        metrics = evaluate(_PixelRule(), dataset, progress=False)
        assert metrics["aAcc"] == pytest.approx(reference["aAcc"])
        assert metrics["IoU"] == pytest.approx(reference["IoU"])


def test_train_and_evaluate_on_rasters_match_the_cut_patches(root: Path, tmp_path: Path, capsys) -> None:
    tiny_model(num_classes=len(CLASSES)).save_pretrained(tmp_path / "start")
    run = tmp_path / "run"
    window = ["--layout", "rasters", "--raster-window", "32x32"]
    small = ["--batch-size", "2", "--crop-size", "32", "32", "--num-workers", "0", "--no-progress"]
    args = ["train", "--data", str(root), *window, "--model", str(tmp_path / "start"), "--out", str(run), *small]
    assert main([*args, "--iters", "2", "--samples-per-epoch", "3", "--lr", "0.02"]) == 0
    assert "best mIoU" in capsys.readouterr().out
    out_json = tmp_path / "val.json"
    evaluate_args = ["evaluate", "--data", str(root), *window, "--model", str(run / "best"), "--json", str(out_json)]
    assert main([*evaluate_args, "--no-progress"]) == 0
    measured = json.loads(out_json.read_text())
    assert measured["data"]["layout"] == "rasters" and measured["data"]["images"] == 9

    import deeplabv3p

    model = deeplabv3p.create_model(str(run / "best"))
    val = SegmentationDataset(root, "val", layout="rasters", window=32)
    patches = SegmentationDataset(_cut_into_patches(root, val, tmp_path / "patches"), "val")
    reference = evaluate(model, patches, progress=False)
    assert measured["aAcc"] == pytest.approx(reference["aAcc"])
    for key in ("IoU", "Acc"):
        for name in CLASSES:
            assert measured[key][name] == pytest.approx(reference[key][name], nan_ok=True)
    assert evaluate(model, val, progress=False)["aAcc"] == pytest.approx(reference["aAcc"])


def test_bands_are_chosen_as_predict_chooses_them(tmp_path: Path, capsys) -> None:
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    pixels = synthetic_pixels(40, 48, 4, "uint8", seed=6)  # RGB + NIR, the 4th band not declared alpha
    for folder, data in (("images", pixels), ("masks", _labels_of(pixels)[None])):
        (tmp_path / folder / "val").mkdir(parents=True)
        write_geotiff(tmp_path / folder / "val" / "x.tif", data)
    with pytest.raises(ValueError, match=r"x\.tif.*4 bands.*bands=\(1, 2, 3\)"):
        SegmentationDataset(tmp_path, "val", layout="rasters")
    chosen = SegmentationDataset(tmp_path, "val", layout="rasters", window=32, bands=[4, 3, 2])
    np.testing.assert_array_equal(chosen.load(0)[0], np.moveaxis(pixels[[3, 2, 1], :20, :24], 0, -1))
    every = SegmentationDataset(tmp_path, "val", layout="rasters", window=32, in_chans=4)
    assert every.load(0)[0].shape == (20, 24, 4)
    assert main(["train", "--data", str(tmp_path), "--layout", "folder", "--raster-window", "32", "--model",
                 "deeplabv3plus", "--no-progress"]) == 2  # fmt: skip
    assert "apply to layout='rasters' only" in capsys.readouterr().err


def test_the_bands_trained_on_are_saved_with_the_weights_and_read_by_predict(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deeplabv3p
    from deeplabv3p.inference import raster_predict
    from deeplabv3p.inference.raster_predict import RasterOptions, predict_raster
    from deeplabv3p.inference.writer import write_predictions

    tiny_model(num_classes=len(CLASSES)).save_pretrained(tmp_path / "start")
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--layout", "rasters", "--raster-window", "32x32", "--bands", "3,2,1",
            "--model", str(tmp_path / "start"), "--out", str(run), "--batch-size", "2", "--crop-size", "32", "32",
            "--num-workers", "0", "--no-progress", "--iters", "1", "--samples-per-epoch", "2"]  # fmt: skip
    assert main(args) == 0
    model = deeplabv3p.create_model(str(run / "best"))
    assert model.pretrained_cfg.bands == (3, 2, 1)
    assert json.loads((run / "best" / "config.json").read_text())["pretrained_cfg"]["bands"] == [3, 2, 1]

    from deeplabv3p.train import datasets

    evaluated = []
    real_dataset = datasets.SegmentationDataset

    def recording_dataset(*args, **kwargs):
        evaluated.append(kwargs.get("bands"))
        return real_dataset(*args, **kwargs)

    monkeypatch.setattr(datasets, "SegmentationDataset", recording_dataset)
    evaluate_args = ["evaluate", "--data", str(root), "--layout", "rasters", "--raster-window", "32x32", "--split",
                     "val", "--model", str(run / "best"), "--no-progress"]  # fmt: skip
    assert main(evaluate_args) == 0 and main([*evaluate_args, "--bands", "1,2,3"]) == 0
    assert evaluated == [(3, 2, 1), (1, 2, 3)]  # evaluate reads the trained bands unless told others, as predict

    opened = []
    real_open = raster_predict.open_raster

    def recording_open(path, in_chans, bands, nodata):
        opened.append(bands if bands is None else (bands.bands, bands.trained))
        return real_open(path, in_chans, bands, nodata)

    monkeypatch.setattr(raster_predict, "open_raster", recording_open)
    source = root / "images" / "val" / "c.tif"
    predict_raster(model, source, tmp_path / "trained.tif", crop_size=32, stride=32)
    predict_raster(model, source, tmp_path / "asked.tif", bands=(1, 2, 3), crop_size=32)
    assert opened == [((3, 2, 1), True), ((1, 2, 3), False)]  # the weights' bands unless others are asked for

    (tmp_path / "folder").mkdir()
    two_bands = write_geotiff(tmp_path / "folder" / "two.tif", synthetic_pixels(40, 40, 2, "uint8", seed=3))
    with pytest.raises(ValueError, match=r"asks for band 3.*trained on bands \(3, 2, 1\).*--bands"):
        predict_raster(model, two_bands, tmp_path / "two_labels.tif", crop_size=32)
    with pytest.raises(ValueError, match=r"asks for band 3.*trained on bands \(3, 2, 1\)"):  # a folder: same rule
        write_predictions(model, tmp_path / "folder", tmp_path / "out", raster=RasterOptions(), crop_size=32)


def test_one_band_for_an_rgb_model_trains_and_its_weights_record_it(root: Path, tmp_path: Path) -> None:
    """``bands=(1,)`` for an RGB model reads gray repeated to three bands, as the reader always allowed: the weights'
    record accepts it too (fit used to train, then fail as it described the weights: "bands (1,) are 1 but mean/std
    have 3 values"), and predict reads that band from a TIFF as predict_raster does."""
    from deeplabv3p import train as training

    data = SegmentationDataset(root, "train", layout="rasters", window=32, bands=(1,), samples_per_epoch=2)
    model = tiny_model(num_classes=len(CLASSES))
    result = training.fit(model, data, out=tmp_path / "run", iters=1, batch_size=2, crop_size=(32, 32),
                          num_workers=0, progress=False)  # fmt: skip
    assert result.iterations == 1 and model.pretrained_cfg.bands == (1,)
    assert model.predict(root / "images" / "val" / "c.tif", resize=False).labels.shape == (70, 90)


def test_raster_bands_a_model_cannot_read_are_refused_before_training(root: Path, tmp_path: Path) -> None:
    from deeplabv3p import train as training

    with pytest.raises(ValueError, match=r"bands=\(1, 2\) selects 2 band\(s\) but a model of in_chans=3 reads 1 or 3"):
        SegmentationDataset(root, "train", layout="rasters", window=32, bands=(1, 2))

    class TwoBands(torch.utils.data.Dataset):
        """A dataset of its own that says it reads two raster bands for an RGB model."""

        num_classes, bands = len(CLASSES), (1, 2)

        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(3, 40, 40), torch.zeros(40, 40, dtype=torch.int64)

    with pytest.raises(ValueError, match=r"training set reads raster bands \(1, 2\) \(its bands argument\)"):
        training.fit(tiny_model(num_classes=len(CLASSES)), TwoBands(), out=tmp_path / "run", iters=1, batch_size=2,
                     crop_size=(32, 32), num_workers=0, progress=False)  # fmt: skip
    assert not (tmp_path / "run" / "log.jsonl").exists()  # refused before the first step
