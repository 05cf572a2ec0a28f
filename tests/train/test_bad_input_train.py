"""Bad-input catalogue, training: every bad setting or dataset is an error naming the argument or sample, raised
before `fit` writes anything; every accepted sample form stays aligned through augmentation; divergence stops."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from layout_trees import make_cityscapes, make_img_ann, make_voc12aug
from nets import tiny_model
from PIL import Image
from torchvision import tv_tensors
from train_helpers import TINY, one_thread  # noqa: F401  (one_thread: autouse fixture)

import deeplabv3p
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.loader import AugmentedDataset
from deeplabv3p.train.samples import sample_spec
from deeplabv3p.train.trainer import TrainConfig, fit
from deeplabv3p.train.transforms import AugmentSettings, training_transforms

K = 5  # classes of tiny_model()


class Pairs(torch.utils.data.Dataset):
    """Four random samples of 40x40 as (uint8 (3, H, W) tensor, int64 (H, W) tensor), or made by `make`."""

    num_classes = K

    def __init__(self, make: Callable[[torch.Tensor, torch.Tensor], Any] | None = None, n: int = 4) -> None:
        self.make, self.n = make, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        g = torch.Generator().manual_seed(index)
        image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=g)
        mask = torch.randint(0, K, (40, 40), generator=g)
        return (image, mask) if self.make is None else self.make(image, mask)


# ----- settings: refused before anything is written -----------------------------------------------------------------

SETTING_CASES = [
    ("momentum-5", {"momentum": 5.0}, ValueError, ["momentum", "[0, 1)", "5.0"]),
    ("momentum-1", {"momentum": 1.0}, ValueError, ["momentum"]),
    ("momentum-negative", {"momentum": -0.1}, ValueError, ["momentum"]),
    ("momentum-nan", {"momentum": float("nan")}, ValueError, ["momentum"]),
    ("weight-decay-negative", {"weight_decay": -1e-4}, ValueError, ["weight_decay"]),
    ("weight-decay-inf", {"weight_decay": float("inf")}, ValueError, ["weight_decay"]),
    ("lr-zero", {"lr": 0.0}, ValueError, ["lr"]),
    ("lr-negative", {"lr": -0.01}, ValueError, ["lr"]),
    ("lr-inf", {"lr": float("inf")}, ValueError, ["lr"]),
    ("lr-str", {"lr": "0.01"}, TypeError, ["lr", "str"]),
    ("power-negative", {"power": -1.0}, ValueError, ["power"]),
    ("min-lr-negative", {"min_lr": -1.0}, ValueError, ["min_lr"]),
    ("encoder-lr-mult-negative", {"encoder_lr_mult": -1.0}, ValueError, ["encoder_lr_mult"]),
    ("aux-weight-negative", {"aux_weight": -0.4}, ValueError, ["aux_weight"]),
    ("flip-prob-2", {"flip_prob": 2.0}, ValueError, ["flip_prob"]),
    ("flip-prob-negative", {"flip_prob": -0.5}, ValueError, ["flip_prob"]),
    ("ratio-range-reversed", {"ratio_range": (2.0, 1.0)}, ValueError, ["ratio_range"]),
    ("ratio-range-zero", {"ratio_range": (0.0, 1.0)}, ValueError, ["ratio_range"]),
    ("ratio-range-one-value", {"ratio_range": (1.0,)}, ValueError, ["ratio_range"]),
    ("cat-max-ratio-zero", {"cat_max_ratio": 0.0}, ValueError, ["cat_max_ratio"]),
    ("cat-max-ratio-big", {"cat_max_ratio": 1.5}, ValueError, ["cat_max_ratio"]),
    ("batch-size-1", {"batch_size": 1}, ValueError, ["batch_size", ">= 2"]),
    ("batch-size-0", {"batch_size": 0}, ValueError, ["batch_size"]),
    ("crop-size-zero", {"crop_size": (0, 32)}, ValueError, ["crop_size"]),
    ("crop-size-str", {"crop_size": "32"}, TypeError, ["crop_size", "str"]),
    ("scale-negative", {"scale": (-1, 32)}, ValueError, ["scale"]),
    ("class-weight-length", {"class_weight": [1.0, 2.0]}, ValueError, ["class_weight", "2 entries"]),
    ("class-weight-negative", {"class_weight": [1.0, -1.0, 1.0, 1.0, 1.0]}, ValueError, ["class_weight"]),
    ("class-weight-nan", {"class_weight": [float("nan")] * K}, ValueError, ["class_weight"]),
    ("class-weight-str", {"class_weight": "1,1,1,1,1"}, ValueError, ["class_weight"]),
    ("ohem-min-kept-zero", {"ohem_min_kept": 0}, ValueError, ["ohem_min_kept"]),
    ("ohem-thresh-alone", {"ohem_thresh": 0.7}, ValueError, ["ohem_thresh"]),
    ("amp-fp8", {"amp": "fp8"}, ValueError, ["amp"]),
    ("iters-zero", {"iters": 0}, ValueError, ["iters"]),
    ("accum-steps-zero", {"accum_steps": 0}, ValueError, ["accum_steps"]),
    ("num-workers-negative", {"num_workers": -1}, ValueError, ["num_workers"]),
    ("seed-negative", {"seed": -1}, ValueError, ["seed"]),
    ("unknown-setting", {"learning_rate": 0.1}, TypeError, ["learning_rate"]),
    ("config-not-trainconfig", {"config": {"iters": 2}}, TypeError, ["config", "TrainConfig"]),
    ("resume-from-nowhere", {"resume": "no/such/run"}, FileNotFoundError, ["no/such/run"]),
]


@pytest.mark.parametrize(
    ("overrides", "exc", "words"), [c[1:] for c in SETTING_CASES], ids=[c[0] for c in SETTING_CASES]
)
def test_bad_setting_is_refused_before_writing(tmp_path, overrides, exc, words):
    out = tmp_path / "run"
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(exc) as info:
        fit(model, Pairs(), out=out, **{**TINY, **overrides})
    message = str(info.value)
    assert all(word in message for word in words), message
    assert not out.exists()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_train_config_itself_refuses_bad_values():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        TrainConfig().replace(momentum=5.0)
    with pytest.raises(ValueError, match=r"flip_prob"):
        TrainConfig().replace(flip_prob=2.0)


def test_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "run.txt"
    out.write_text("mine")
    with pytest.raises(ValueError, match=r"out '.*run\.txt' is a file"):
        fit(tiny_model(), Pairs(), out=out, **TINY)
    assert out.read_text() == "mine"


# ----- datasets: the first samples are checked before anything is written -------------------------------------------


class Val(torch.utils.data.Dataset):
    """Validation pairs as (H, W, 3) uint8 arrays with (H, W) masks whose labels `labels` gives."""

    num_classes = K

    def __init__(self, labels: int) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((40, 40, 3), np.uint8), np.full((40, 40), self.labels, np.int64)


DATA_CASES = [
    ("train-labels-out-of-range", Pairs(lambda i, m: (i, m + 10)), None, ValueError, ["training sample 0", "[10"]),
    ("train-labels-negative", Pairs(lambda i, m: (i, m - 9)), None, ValueError, ["training sample 0", "-9"]),
    ("val-labels-out-of-range", Pairs(), Val(labels=7), ValueError, ["validation sample 0", "[7]"]),
    ("train-float-image", Pairs(lambda i, m: (i.float() / 255, m)), None, ValueError, ["sample 0", "0..1 scale"]),
    ("train-int32-image", Pairs(lambda i, m: (i.int(), m)), None, TypeError, ["sample 0", "uint8"]),
    ("train-normalized-image", Pairs(lambda i, m: (i.float() / 64 - 2, m)), None, ValueError, ["sample 0", "0..255"]),
    ("train-float-mask", Pairs(lambda i, m: (i, m.float())), None, TypeError, ["sample 0", "mask"]),
    ("train-not-a-pair", Pairs(lambda i, m: i), None, TypeError, ["(image, mask) pairs"]),
    ("train-size-mismatch", Pairs(lambda i, m: (i, m[:30])), None, ValueError, ["sample 0", "(30, 40)"]),
    ("train-image-4d", Pairs(lambda i, m: (i[None], m)), None, ValueError, ["sample 0", "(3, H, W)"]),
    ("train-empty", Pairs(n=0), None, ValueError, ["training set is empty"]),
    ("val-empty", Pairs(), Pairs(n=0), ValueError, ["validation set is empty"]),
    ("train-classes-differ", type("P3", (Pairs,), {"num_classes": 3})(), None, ValueError, ["num_classes=3"]),
]


@pytest.mark.parametrize(("train", "val", "exc", "words"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_dataset_is_refused_before_writing(tmp_path, train, val, exc, words):
    out = tmp_path / "run"
    with pytest.raises(exc) as info:
        fit(tiny_model(), train, val, out=out, **TINY)
    message = str(info.value)
    assert all(word in message for word in words), message
    assert not out.exists()


# ----- every accepted sample form stays aligned through the augmentation --------------------------------------------


def _coded(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose first channel is its column index and whose mask is a function of that column."""
    h, w = mask.shape
    columns = torch.arange(w, dtype=torch.uint8).expand(h, w)
    image = image.clone()
    image[0] = columns * 4
    return image, (columns.long() // 8) % K


def _label_of(image: torch.Tensor) -> torch.Tensor:
    return (image[0].long() // 4 // 8) % K


FORMS = {
    "tensor-tensor": lambda i, m: (i, m),
    "array-array": lambda i, m: (i.permute(1, 2, 0).numpy(), m.numpy()),
    "tensor-array": lambda i, m: (i, m.numpy().astype(np.uint8)),
    "array-tensor": lambda i, m: (i.permute(1, 2, 0).numpy(), m.int()),
    "tv-tensors": lambda i, m: (tv_tensors.Image(i), tv_tensors.Mask(m)),
    "mask-1hw": lambda i, m: (i, m[None]),
    # the one image rule of predict, on the 0..255 scale: any dtype it reads, gray, PIL
    "float64-tensor": lambda i, m: (i.double(), m),
    "uint16-tensor": lambda i, m: ((i.to(torch.int32) * 257).to(torch.uint16), m),  # RGB: the high byte, i again
    "gray-array": lambda i, m: (i[0].numpy(), m),
    "pil-image": lambda i, m: (Image.fromarray(i.permute(1, 2, 0).numpy()), m),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("ratio_range", [(1.0, 1.0), (0.75, 1.5)], ids=["crop-flip", "resize-crop-flip"])
def test_every_sample_form_stays_aligned(form, ratio_range):
    data = Pairs(lambda i, m: FORMS[form](*_coded(i, m)))
    augment = AugmentSettings((24, 24), None, ratio_range, 1.0, flip_prob=1.0, photometric=False)
    transform = training_transforms(augment)
    stream = AugmentedDataset(data, transform, sample_spec(3))
    for key in [(i, 1000 + i) for i in range(4)]:
        image, mask = stream[key]
        assert image.shape[1:] == mask.shape
        agree = (mask == _label_of(image)).double().mean().item()
        if ratio_range == (1.0, 1.0):
            assert agree == 1.0, (form, agree)
        else:  # bilinear (image) and nearest (mask) resizing differ only at the edges of the 8-pixel bands
            assert agree > 0.8, (form, agree)
        assert image[0, :, 0].float().mean() > image[0, :, -1].float().mean()  # flipped: columns now decrease


def test_fit_on_plain_array_pairs(tmp_path):
    data = Pairs(lambda i, m: FORMS["array-array"](i, m))
    result = fit(tiny_model(), data, out=tmp_path / "run", **{**TINY, "iters": 2})
    assert result.iterations == 2


# ----- divergence stops the run -------------------------------------------------------------------------------------


def test_a_diverging_run_stops_with_a_clear_error(tmp_path):
    """lr=100 with a sound momentum: the loss climbs from ~2 to hundreds within three iterations, still finite."""
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"times where it started.*diverged.*lr \(now 100.0\)"):
        fit(tiny_model(), Pairs(), out=out, **{**TINY, "iters": 12, "lr": 100.0, "log_interval": 1})
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert all(np.isfinite(losses)) and len(losses) < 12


# ----- dataset folders ----------------------------------------------------------------------------------------------


def _dataset(root: Path, size: tuple[int, int] = (16, 16)) -> Path:
    for split_dir in ("images/train", "masks/train"):
        (root / split_dir).mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / "images/train" / f"{name}.png")
        Image.fromarray(np.zeros(size, np.uint8)).save(root / "masks/train" / f"{name}.png")
    (root / "classes.json").write_text(json.dumps(["x", "y"]))
    return root


def test_dataset_root_that_is_a_file(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"root '.*data\.zip' is a file"):
        SegmentationDataset(path)


@pytest.mark.parametrize("kind", ["image", "mask"])
def test_decompression_bomb_is_named_and_listed_by_verify(tmp_path, monkeypatch, kind):
    root = _dataset(tmp_path)
    bomb = root / f"{kind}s/train/b.png"
    Image.fromarray(np.zeros((64, 64, 3) if kind == "image" else (64, 64), np.uint8)).save(bomb)
    # 64x64 = 4096 pixels, over twice the limit: PIL refuses it as a bomb; the 16x16 files stay readable
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    dataset = SegmentationDataset(root)
    with pytest.raises(ValueError, match=rf"cannot read {kind}( file)? '{bomb}'.*MAX_IMAGE_PIXELS"):
        dataset.load(1)
    with pytest.raises(ValueError, match=r"1 of 2 samples have problems") as info:
        dataset.verify()
    assert str(bomb) in str(info.value)


# ----- issue 18: fit's remaining unclear or late errors ---------------------------------------------------------------


class OnePoisoned(Pairs):
    """Four float samples on the 0..255 scale, sample `bad` holding one `value` pixel (NaN, Inf)."""

    def __init__(self, bad: int, value: float) -> None:
        super().__init__()
        self.bad, self.value = bad, value

    def __getitem__(self, index: int) -> Any:
        image, mask = super().__getitem__(index)
        image = image.float()
        if index == self.bad:
            image[1, 7, 9] = self.value
        return image, mask


class AllIgnored(Pairs):
    def __getitem__(self, index: int) -> Any:
        image, mask = super().__getitem__(index)
        return image, torch.full_like(mask, 255)


class Tiny(Val):
    """Validation images of `side` pixels."""

    def __init__(self, side: int) -> None:
        super().__init__(labels=1)
        self.side = side

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((self.side, self.side, 3), np.uint8), np.ones((self.side, self.side), np.int64)


FIT_CASES = [
    ("train-nan-pixel", {}, OnePoisoned(0, float("nan")), None, ValueError, ["training sample 0", "1 nan", "row 7"]),
    ("train-inf-pixel", {}, OnePoisoned(0, float("inf")), None, ValueError, ["training sample 0", "1 inf"]),
    ("train-all-masks-ignored", {}, AllIgnored(), None, ValueError, ["first 4 training masks", "ignore_index 255"]),
    ("train-rgb-data-4-band-model", {"in_chans": 4}, Pairs(), None, ValueError, ["4 bands", "3"]),
    ("val-smaller-than-output-stride", {}, Pairs(), Tiny(4), ValueError, ["4x4 (H x W)", "16x16", "test_scale"]),
    (
        "train-channels-first-numpy", {}, Pairs(lambda i, m: (i.numpy(), m.numpy())), None, ValueError,
        ["training sample 0", "looks like channels-first (C, H, W)", "(3, 40, 40)"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model_kwargs", "train", "val", "exc", "words"), [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES]
)
def test_fit_refuses_bad_samples_before_writing(tmp_path, model_kwargs, train, val, exc, words):
    out = tmp_path / "run"
    with pytest.raises(exc) as info:
        fit(tiny_model(**model_kwargs), train, val, out=out, **TINY)
    message = str(info.value)
    assert all(word in message for word in words), message
    assert not out.exists()


def test_a_non_finite_model_is_never_saved(tmp_path):
    """Issue 18: the loss was checked only every log_interval, so a run wrote NaN checkpoints (and best/) first.
    An absurd lr makes the weights inf/NaN within a few steps; no log entry comes before the end (log_interval)."""
    out = tmp_path / "run"
    settings = {**TINY, "iters": 8, "lr": 1e12, "momentum": 0.0, "log_interval": 100, "checkpoint_interval": 1}
    with pytest.raises(FloatingPointError, match=r"not finite.*was not written"):
        fit(tiny_model(), Pairs(), Pairs(), out=out, **settings, val_interval=1, keep_checkpoints=0)
    saved = sorted((out / "checkpoints").glob("iter_*")) + ([out / "best"] if (out / "best").exists() else [])
    for folder in saved:
        weights = deeplabv3p.create_model(str(folder)).state_dict()
        assert all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()), folder


# ----- issue 18: dataset trees whose errors named no file, or called a path that exists missing ----------------------


def _fifo_root(tmp: Path) -> tuple[dict[str, Any], str]:
    os.mkfifo(tmp / "data")
    return {"root": tmp / "data"}, str(tmp / "data")


def _images_split_is_a_file(tmp: Path) -> tuple[dict[str, Any], str]:
    root = _dataset(tmp / "data")
    (root / "images" / "val").write_text("not a folder")
    return {"root": root, "split": "val"}, str(root / "images" / "val")


def _mmseg_label_folder_is_a_file(tmp: Path) -> tuple[dict[str, Any], str]:
    make_img_ann(tmp / "data", 4, counts={"train": 2})
    shutil.rmtree(tmp / "data" / "ann_dir" / "train")
    (tmp / "data" / "ann_dir" / "train").write_text("not a folder")
    kwargs = {"root": tmp / "data", "split": "train", "layout": "mmseg", "classes": ("a", "b", "c")}
    return kwargs, str(tmp / "data" / "ann_dir" / "train")


def _cityscapes_16_bit_label(tmp: Path) -> tuple[dict[str, Any], str]:
    make_cityscapes(tmp / "data", {"train": 1})
    label = next((tmp / "data" / "gtFine" / "train").rglob("*_labelIds.png"))
    Image.fromarray(np.full((12, 24), 300, np.uint16)).save(label)  # a 16-bit file with a value past 255
    return {"root": tmp / "data", "split": "train", "layout": "cityscapes", "read": 0}, str(label)


def _split_list_not_utf8(tmp: Path) -> tuple[dict[str, Any], str]:
    make_voc12aug(tmp / "data")
    listing = tmp / "data" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    listing.write_bytes("2007_000033\n".encode("utf-16"))
    return {"root": tmp / "data", "split": "val", "layout": "voc12aug"}, str(listing)


def _mmseg_empty_img_suffix(tmp: Path) -> tuple[dict[str, Any], str]:
    make_img_ann(tmp / "data", 4, counts={"train": 2})
    return {"root": tmp / "data", "split": "train", "layout": "mmseg", "classes": ("a", "b", "c"), "img_suffix": ""}, (
        "img_suffix=''"
    )


# (case id, the tree: tmp -> (SegmentationDataset kwargs, what the error must name), the error, other words)
TREE_CASES = [
    ("root-is-a-fifo", _fifo_root, ValueError, ["is a FIFO"]),
    ("folder-split-images-is-a-file", _images_split_is_a_file, FileNotFoundError, ["is a file, not a folder"]),
    ("mmseg-label-folder-is-a-file", _mmseg_label_folder_is_a_file, FileNotFoundError, ["is a file, not a folder"]),
    ("cityscapes-16-bit-label-300", _cityscapes_16_bit_label, ValueError, ["300", "0..255"]),
    ("split-list-not-utf8", _split_list_not_utf8, ValueError, ["not UTF-8"]),
    ("mmseg-img-suffix-empty", _mmseg_empty_img_suffix, ValueError, ["'.jpg'", "every file"]),
]


@pytest.mark.parametrize(("tree", "exc", "words"), [c[1:] for c in TREE_CASES], ids=[c[0] for c in TREE_CASES])
def test_a_bad_dataset_tree_names_the_file(tmp_path, tree, exc, words):
    kwargs, named = tree(tmp_path)
    read = kwargs.pop("read", None)
    with pytest.raises(exc) as info:
        dataset = SegmentationDataset(**kwargs)
        dataset.read_mask(read)
    message = str(info.value)
    assert named in message and all(word in message for word in words), message
    assert "does not exist" not in message


def test_a_batch_up_to_twice_a_small_training_set_warns_and_trains(tmp_path):
    """A batch of 6 on 4 samples is a small dataset (warned, trained); 9 on 4 is refused before any work."""
    with pytest.warns(UserWarning, match=r"batch_size=6 is larger than the training set \(4 samples\)"):
        result = fit(tiny_model(), Pairs(), out=tmp_path / "run", **{**TINY, "iters": 1, "batch_size": 6})
    assert result.iterations == 1
    with pytest.raises(ValueError, match=r"batch_size=9 .* pass batch_size=4 or fewer"):
        fit(tiny_model(), Pairs(), out=tmp_path / "refused", **{**TINY, "batch_size": 9})
    assert not (tmp_path / "refused").exists()
