"""The fine-tuning loop on a tiny network and a tiny synthetic set: learning, resume, checkpoints, options, errors."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nets import tiny_model
from PIL import Image
from train_helpers import TINY, one_thread  # noqa: F401  (one_thread: autouse fixture)

import deeplabv3p
from deeplabv3p import train as training
from deeplabv3p.inference import precision
from deeplabv3p.pretrained.config import PretrainedCfg
from deeplabv3p.train import step
from deeplabv3p.train.checkpoint import find_checkpoint, read_training_state
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.demo import make_synthetic_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_train=6, num_val=3, size=64, seed=1)


@pytest.fixture
def train_set(data_root: Path) -> SegmentationDataset:
    return SegmentationDataset(data_root, "train")


def _train_losses(out: Path) -> list[float]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


def test_a_few_iterations_reduce_the_loss(train_set: SegmentationDataset, tmp_path: Path) -> None:
    model = tiny_model()
    training.fit(
        model, train_set, out=tmp_path, **{**TINY, "iters": 16, "log_interval": 1, "lr": 0.05, "photometric": False}
    )
    losses = _train_losses(tmp_path)
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4


def test_resume_continues_exactly(train_set: SegmentationDataset, tmp_path: Path) -> None:
    straight = tiny_model()
    training.fit(straight, train_set, out=tmp_path / "straight", **TINY)

    interrupted = tiny_model()
    training.fit(interrupted, train_set, out=tmp_path / "split", checkpoint_interval=2, keep_checkpoints=0, **TINY)
    runs = tmp_path / "split" / "checkpoints"
    shutil.rmtree(runs / "iter_000004")  # as if the run had been killed after iteration 2's checkpoint
    (runs / "latest").write_text("iter_000002\n")
    at_two = read_training_state(runs / "iter_000002")[0]

    resumed = tiny_model(seed=123)  # different initial weights: everything must come from the checkpoint
    result = training.fit(resumed, train_set, out=tmp_path / "split", resume=True, **TINY)
    assert result.iterations == 4
    expected, got = straight.state_dict(), resumed.state_dict()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert any(not torch.equal(at_two[k], got[k]) for k in at_two)  # and it did train past the checkpoint
    state = read_training_state(runs / "iter_000004")[1]
    assert state["scheduler"]["last_epoch"] == 4 and state["iteration"] == 4


def test_checkpoints_are_complete_and_pruned(train_set: SegmentationDataset, tmp_path: Path) -> None:
    training.fit(tiny_model(), train_set, out=tmp_path, checkpoint_interval=1, keep_checkpoints=2, **TINY)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["iter_000003", "iter_000004", "latest"]  # no temporaries
    assert find_checkpoint(tmp_path) == root / "iter_000004"
    state_dict, state = read_training_state(root / "iter_000004")
    assert set(state) >= {"optimizer", "scheduler", "rng", "iteration", "config"}
    reloaded = deeplabv3p.create_model(str(root / "iter_000004"))  # every checkpoint is a model folder
    assert reloaded.config.encoder == "resnet18" and reloaded.pretrained_cfg.classes == train_set.classes
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, state_dict[key])
    assert json.loads((tmp_path / "train_config.json").read_text())["train"]["iters"] == 4


def test_model_metadata_after_fit(train_set: SegmentationDataset, tmp_path: Path) -> None:
    model = tiny_model()
    training.fit(model, train_set, out=tmp_path, scale=(64, 64), **TINY)
    cfg = model.pretrained_cfg
    assert cfg.classes == train_set.classes and cfg.palette == train_set.palette
    assert cfg.test.scale == (64, 64) and cfg.crop_size == (48, 48) and cfg.test.mode == "whole"
    assert not model.training


class _Counting(torch.utils.data.Dataset):
    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset, self.calls = dataset, 0
        self.num_classes, self.classes = dataset.num_classes, dataset.classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.calls += 1
        return self.dataset[index]


def test_accumulation_amp_and_channels_last(train_set: SegmentationDataset, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # as on a CPU with AVX512-BF16/AMX
    counting = _Counting(train_set)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = {**TINY, "iters": 2, "accum_steps": 2, "amp": "bf16", "channels_last": True, "log_interval": 1}
    training.fit(model, counting, out=tmp_path, **options)
    assert counting.calls == 1 + 2 * 2 * 2  # the check of sample 0 before training, then iterations x accum x batch
    losses = _train_losses(tmp_path)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fp16_keeps_its_gradient_scaler_in_checkpoints(train_set: SegmentationDataset, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(step, "emulated", lambda dtype, device: None)  # fp16 as on a GPU (refused on the CPU)
    training.fit(tiny_model(), train_set, out=tmp_path, amp="fp16", **{**TINY, "iters": 2})
    state = read_training_state(tmp_path / "checkpoints" / "iter_000002")[1]
    assert state["scaler"]["scale"] > 0 and state["config"]["amp"] == "fp16"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_an_emulated_amp_is_refused_before_anything_is_written(train_set, tmp_path: Path, monkeypatch, amp) -> None:
    """A CPU without AVX512-BF16/AMX only emulates bf16 (and every CPU fp16): 20-24x slower, so refused."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match=rf"amp='{amp}' on cpu: .*8\.5 s under bf16 .*amp='auto'"):
        training.fit(tiny_model(), train_set, out=tmp_path / "run", device="cpu", amp=amp, **TINY)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("native", "recorded"), [(False, None), (True, "bf16")])
def test_auto_amp_trains_in_the_native_precision_and_records_it(
    train_set, tmp_path: Path, monkeypatch, caplog, native, recorded
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    with caplog.at_level(logging.INFO, logger="deeplabv3p"):
        training.fit(tiny_model(), train_set, out=tmp_path, device="cpu", amp="auto", **{**TINY, "iters": 1})
    assert "amp='auto' on cpu" in caplog.text and (recorded or "full precision") in caplog.text
    assert json.loads((tmp_path / "train_config.json").read_text())["train"]["amp"] == recorded
    state = read_training_state(tmp_path / "checkpoints" / "iter_000001")[1]
    assert state["config"]["amp"] == recorded  # resume compares the precision trained in, not "auto"


def test_freeze_encoder_trains_only_the_head(train_set: SegmentationDataset, tmp_path: Path) -> None:
    model = tiny_model()
    encoder = {k: v.clone() for k, v in model.encoder.named_parameters()}
    head = model.classifier.conv.weight.clone()
    training.fit(model, train_set, out=tmp_path, freeze_encoder=True, **TINY)
    assert all(torch.equal(encoder[k], v) for k, v in model.encoder.named_parameters())
    assert not torch.equal(head, model.classifier.conv.weight)
    assert all(p.requires_grad for p in model.parameters())  # the caller's setting is restored


def test_ohem_and_class_weights_change_the_loss(train_set: SegmentationDataset, tmp_path: Path) -> None:
    """The first logged loss (initial weights, the same batch and dropout for the same seed) against a plain run."""

    def first_loss(name: str, **options) -> float:
        training.fit(tiny_model(), train_set, out=tmp_path / name, **{**TINY, "iters": 1, "log_interval": 1, **options})
        (loss,) = _train_losses(tmp_path / name)
        return loss

    plain = first_loss("plain")
    assert first_loss("unit_weights", class_weight=[1.0] * 5) == pytest.approx(plain, rel=1e-6)  # a fair comparison
    assert abs(first_loss("weighted", class_weight=[0.5, 1, 1, 1, 2]) - plain) > 1e-3 * plain
    # OHEM keeps the 2 x 100 hardest of 2 x 48 x 48 pixels, still divided by all pixels: the main loss shrinks.
    assert first_loss("ohem", ohem_min_kept=100) < 0.9 * plain


def test_fit_argument_errors(train_set: SegmentationDataset, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['iterations'\]"):
        training.fit(tiny_model(), train_set, out=tmp_path, iterations=3)
    with pytest.raises(ValueError, match="num_classes=5"):
        training.fit(tiny_model(num_classes=3), train_set, out=tmp_path, **TINY)
    with pytest.raises(ValueError, match="amp must be"):
        training.fit(tiny_model(), train_set, out=tmp_path, amp="fp8")
    with pytest.raises(ValueError, match="class_weight has 2 entries"):
        training.fit(tiny_model(), train_set, out=tmp_path, class_weight=[1, 2], **TINY)
    with pytest.raises(ValueError, match="crop_size"):
        training.TrainConfig().replace(crop_size=(0, 4))
    with pytest.raises(TypeError, match="deeplabv3p model"):
        training.fit(torch.nn.Linear(2, 2), train_set, out=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training.fit(tiny_model(), train_set, out=tmp_path, resume=tmp_path / "nothing", **TINY)
    training.fit(tiny_model(), train_set, out=tmp_path / "run", **{**TINY, "iters": 1})
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint iter_000001\); pass resume=True"):
        training.fit(tiny_model(), train_set, out=tmp_path / "run", **TINY)


class _ScriptedModel(torch.nn.Module):
    """Stands in for a model: `predict` returns prepared labels, chosen by the image's first pixel."""

    def __init__(self, predictions: list[np.ndarray], num_classes: int = 3) -> None:
        super().__init__()
        self.predictions, self.num_classes, self.calls = predictions, num_classes, []
        self.pretrained_cfg = PretrainedCfg(num_classes=num_classes)

    def predict(self, image: np.ndarray, **kwargs) -> SimpleNamespace:
        assert image.dtype == np.uint8 and image.ndim == 3  # evaluate feeds raw RGB images, at their own size
        self.calls.append(kwargs)
        return SimpleNamespace(labels=self.predictions[int(image[0, 0, 0])])


def test_evaluate_compares_predictions_with_ground_truth(tmp_path: Path) -> None:
    truths = [np.array([[0, 0, 1], [1, 255, 2]]), np.array([[2, 2, 2], [0, 0, 0]])]
    preds = [np.array([[0, 1, 1], [1, 0, 2]]), np.array([[2, 2, 0], [0, 0, 0]])]
    pairs = []
    for i, truth in enumerate(truths):
        image = np.full((2, 3, 3), i, np.uint8)
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        Image.fromarray(truth.astype(np.uint8)).save(tmp_path / f"{i}_mask.png")
        pairs.append((tmp_path / f"{i}.png", tmp_path / f"{i}_mask.png"))
    dataset = SegmentationDataset(pairs=pairs, classes=["a", "b", "c"])
    model = _ScriptedModel(preds)
    metrics = training.evaluate(model, dataset, mode="slide", tta=True, progress=False)
    assert model.calls == [{"mode": "slide", "tta": True}] * 2
    # labelled pixels, (truth, pred): a 5 px (4 right, 1 as b), b 2 px (both right), c 4 px (3 right, 1 as a);
    # predicted a 5, b 3, c 3. IoU = right / (truth + predicted - right).
    assert metrics["IoU"] == pytest.approx({"a": 400 / 6, "b": 200 / 3, "c": 300 / 4})
    assert metrics["Acc"] == pytest.approx({"a": 80.0, "b": 100.0, "c": 75.0})
    assert metrics["aAcc"] == pytest.approx(900 / 11)
    assert metrics["mIoU"] == pytest.approx((400 / 6 + 200 / 3 + 75) / 3)


def test_fit_validates_keeps_the_best_and_it_reloads(data_root: Path, tmp_path: Path) -> None:
    train_set, val_set = SegmentationDataset(data_root, "train"), SegmentationDataset(data_root, "val")
    model = tiny_model()
    result = training.fit(model, train_set, val_set, out=tmp_path, val_interval=2, **TINY)
    assert [h["iter"] for h in result.history] == [2, 4]
    best = max(result.history, key=lambda h: h["mIoU"])
    assert result.best_iteration == best["iter"] and result.best_path == tmp_path / "best"
    saved = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert saved["iteration"] == best["iter"] and saved["mIoU"] == pytest.approx(best["mIoU"])
    reloaded = deeplabv3p.create_model(str(tmp_path / "best"))
    assert reloaded.pretrained_cfg.metrics["mIoU"] == round(best["mIoU"], 2)
    again = training.evaluate(reloaded, val_set, progress=False)
    assert again["mIoU"] == pytest.approx(best["mIoU"])
    assert model.pretrained_cfg.metrics["mIoU"] == round(result.history[-1]["mIoU"], 2)  # the final weights' own


def test_a_crop_larger_than_every_image_warns_once_with_the_numbers(train_set, tmp_path: Path, monkeypatch) -> None:
    """64x64 images and a 96x96 crop: mostly padding; suggest 64x64."""
    with pytest.warns(UserWarning) as caught:
        training.fit(tiny_model(), train_set, out=tmp_path / "big", **{**TINY, "iters": 1, "crop_size": (96, 96)})
    hints = [str(w.message) for w in caught if "larger than every training image" in str(w.message)]
    assert len(hints) == 1, hints
    assert "crop_size (96, 96)" in hints[0] and "6 of 6 sampled, the largest 64x64 (H x W)" in hints[0]
    assert "fill 44% of a crop" in hints[0] and "44 s/iteration" in hints[0] and "--crop-size 64 64" in hints[0]


def test_image_sizes_come_from_file_headers(train_set, monkeypatch) -> None:
    from deeplabv3p.train.samples import image_sizes

    def no_decoding(self, index):
        raise AssertionError("image_sizes decoded a sample")

    monkeypatch.setattr(SegmentationDataset, "load", no_decoding)
    assert image_sizes(train_set) == [(64, 64)] * 6 and image_sizes(train_set, 2) == [(64, 64)] * 2
    assert image_sizes([(torch.zeros(3, 5, 7), torch.zeros(5, 7, dtype=torch.long))]) is None  # no headers to read


def test_crop_hint_follows_the_scale_and_stays_quiet_when_an_image_fills_the_crop() -> None:
    from deeplabv3p.train.components import crop_hint

    cfg = training.TrainConfig().replace(crop_size=(512, 512), batch_size=8)
    assert "the largest 120x160 (H x W)" in str(crop_hint(cfg, [(120, 160), (100, 100)], 200))
    assert "--crop-size 120 160" in str(crop_hint(cfg, [(120, 160)], 1))
    assert crop_hint(cfg, [(120, 160), (600, 400)], 2) is None  # one image is taller than the crop
    assert crop_hint(cfg.replace(scale=(2048, 512)), [(120, 160)], 1) is None  # rescaled to 512x683 first
    assert crop_hint(training.TrainConfig().replace(crop_size=(48, 48)), [(64, 64)], 1) is None


def _with_a_bad_mask(data_root: Path, tmp_path: Path) -> tuple[SegmentationDataset, Path]:
    """A copy of the training set whose last mask (not the one fit checks first) holds label 7 of 5 classes."""
    root = shutil.copytree(data_root, tmp_path / "data")
    data = SegmentationDataset(root, "train")
    bad = data.samples[-1][1]
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(bad)
    return data, bad


def test_a_worker_error_is_raised_as_itself(data_root: Path, tmp_path: Path) -> None:
    data, bad = _with_a_bad_mask(data_root, tmp_path)
    with pytest.raises(ValueError) as caught:
        training.fit(tiny_model(), data, out=tmp_path / "run", **{**TINY, "iters": 3, "num_workers": 1})
    message = str(caught.value)
    assert message.startswith(f"mask {str(bad)!r} holds label(s) [7] outside the 5 classes"), message
    assert "DataLoader worker" not in message and "Traceback" not in message


def test_check_data_reads_every_sample_up_front_and_names_the_bad_files(data_root: Path, tmp_path: Path) -> None:
    train, bad = _with_a_bad_mask(data_root, tmp_path)
    val = SegmentationDataset(train.root, "val")
    small = val.samples[1][0]
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(small)  # its mask is 64x64
    with pytest.raises(ValueError) as caught:
        training.fit(tiny_model(), train, val, out=tmp_path / "run", check_data=True, **TINY)
    message = str(caught.value)
    assert message.startswith("check_data: 2 of 9 samples have problems (nothing was trained or written)")
    assert f"mask {str(bad)!r} holds label(s) [7] outside the 5 classes" in message
    assert f"image {str(small)!r} is 32x48 but its mask" in message and "is 64x64 (height x width)" in message
    assert not (tmp_path / "run").exists()


def test_check_data_reads_the_samples_of_any_dataset(train_set, tmp_path: Path) -> None:
    samples = [train_set[i] for i in range(4)]
    samples[3] = (samples[3][0], torch.full(samples[3][1].shape, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"1 of 4 samples .*\n  training sample 3 \(its mask\) holds label\(s\) \[9\]"):
        training.fit(tiny_model(), samples, out=tmp_path / "run", check_data=True, **TINY)
    assert training.fit(tiny_model(), samples[:3], out=tmp_path / "ok", check_data=True, **{**TINY, "iters": 1})
