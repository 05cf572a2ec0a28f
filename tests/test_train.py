"""The fine-tuning loop on a tiny network and a tiny synthetic set: learning, resume, checkpoints, options, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import deeplabv3p
from deeplabv3p import train as training
from deeplabv3p.checkpoint import find_checkpoint, read_training_state
from deeplabv3p.data import SegmentationDataset
from deeplabv3p.demo import make_synthetic_dataset

TINY = {"iters": 4, "batch_size": 2, "crop_size": (48, 48), "num_workers": 0, "progress": False}


def tiny_model(num_classes: int = 5, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(
        encoder="resnet18",
        encoder_kwargs={"channels": (8, 16, 32, 64)},
        decoder_channels=16,
        low_level_channels=8,
        aux_head=True,
        aux_channels=8,
        num_classes=num_classes,
    )
    return deeplabv3p.create_model("deeplabv3plus", **{**kwargs, **overrides})


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
    rebuilt = tiny_model(seed=7)
    rebuilt.load_state_dict(state_dict)
    config = json.loads((root / "iter_000004" / "config.json").read_text())
    assert config["model"]["encoder"] == "resnet18"
    assert config["pretrained_cfg"]["classes"] == list(train_set.classes)
    assert json.loads((tmp_path / "train_config.json").read_text())["train"]["iters"] == 4


def test_model_metadata_after_fit(train_set: SegmentationDataset, tmp_path: Path) -> None:
    model = tiny_model()
    training.fit(model, train_set, out=tmp_path, scale=(64, 64), **TINY)
    cfg = model.pretrained_cfg
    assert cfg.classes == train_set.classes and cfg.palette == train_set.palette
    assert cfg.test_scale == (64, 64) and cfg.crop_size == (48, 48) and cfg.test_mode == "whole"
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


def test_accumulation_amp_and_channels_last(train_set: SegmentationDataset, tmp_path: Path) -> None:
    counting = _Counting(train_set)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = {**TINY, "iters": 2, "accum_steps": 2, "amp": "bf16", "channels_last": True, "log_interval": 1}
    training.fit(model, counting, out=tmp_path, **options)
    assert counting.calls == 2 * 2 * 2  # iterations x accumulation x batch
    losses = _train_losses(tmp_path)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_freeze_encoder_trains_only_the_head(train_set: SegmentationDataset, tmp_path: Path) -> None:
    model = tiny_model()
    encoder = {k: v.clone() for k, v in model.encoder.named_parameters()}
    head = model.classifier.conv.weight.clone()
    training.fit(model, train_set, out=tmp_path, freeze_encoder=True, **TINY)
    assert all(torch.equal(encoder[k], v) for k, v in model.encoder.named_parameters())
    assert not torch.equal(head, model.classifier.conv.weight)
    assert all(p.requires_grad for p in model.parameters())  # the caller's setting is restored


def test_ohem_and_class_weights_train(train_set: SegmentationDataset, tmp_path: Path) -> None:
    model = tiny_model()
    options = {**TINY, "iters": 2, "log_interval": 1, "ohem_min_kept": 100, "class_weight": [0.5, 1, 1, 1, 2]}
    training.fit(model, train_set, out=tmp_path, **options)
    assert len(_train_losses(tmp_path)) == 2


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
        training.TrainConfig(crop_size=(0, 4))
    with pytest.raises(TypeError, match="deeplabv3p model"):
        training.fit(torch.nn.Linear(2, 2), train_set, out=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training.fit(tiny_model(), train_set, out=tmp_path, resume=tmp_path / "nothing", **TINY)
