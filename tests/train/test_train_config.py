"""`TrainConfig` as sub-records (`AugmentSettings`, `OptimSettings`, `LossSettings`, `TestSettings`): the flat
keywords users give, the documented fields, the nested layout written to ``train_config.json`` and checkpoints, and
the flat layout earlier versions wrote there."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from nets import tiny_model
from train_helpers import TINY, one_thread  # noqa: F401  (one_thread: autouse fixture)

from deeplabv3p import train as training
from deeplabv3p.fields import flat_fields, flat_values
from deeplabv3p.pretrained.test_settings import TestSettings
from deeplabv3p.train.checkpoint import TRAINING_STATE
from deeplabv3p.train.config import TrainConfig
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.demo import make_synthetic_dataset
from deeplabv3p.train.losses import LossSettings
from deeplabv3p.train.optim import OptimSettings
from deeplabv3p.train.transforms import AugmentSettings

LAYOUT_V1 = Path(__file__).parents[1] / "data" / "layout_v1"
# The TrainConfig fields of deeplabv3p 0.1.0, all flat: the names fit's keywords and the train flags still use.
FLAT_V1 = (
    "iters", "batch_size", "crop_size", "scale", "ratio_range", "cat_max_ratio", "flip_prob", "photometric",
    "optimizer", "betas", "lr", "momentum", "weight_decay", "power", "min_lr", "encoder_lr_mult", "clip_grad_norm",
    "pad_size",
    "test_scale", "test_mode", "slide_crop", "slide_stride", "freeze_encoder", "aux_weight", "class_weight",
    "avg_non_ignore", "ohem_min_kept", "ohem_thresh", "amp", "channels_last", "accum_steps", "val_interval",
    "checkpoint_interval", "keep_checkpoints", "log_interval", "num_workers", "seed", "sync_bn",
)  # fmt: skip


def test_every_earlier_flat_name_is_still_a_setting_and_documented():
    view = flat_fields(TrainConfig)
    assert set(FLAT_V1) <= set(view)
    # the rest of TestSettings, and the settings added since
    assert set(view) - set(FLAT_V1) == {"keep_ratio", "tta_ratios", "tta_flip", "check_data"}
    for name, (_, f) in view.items():
        assert f"{name}: {f.metadata['help']}" in TrainConfig.__doc__


def test_flat_keywords_reach_their_records():
    config = TrainConfig().replace(lr=0.02, crop_size=(64, 32), aux_weight=0.2, ohem_min_kept=10, test_mode="whole")
    assert config.optim == OptimSettings(lr=0.02) and config.augment == AugmentSettings(crop_size=(64, 32))
    assert config.loss == LossSettings(aux_weight=0.2, ohem_min_kept=10) and config.test == TestSettings()
    assert config.replace(momentum=0.5).optim == OptimSettings(lr=0.02, momentum=0.5)  # the others are kept
    assert flat_values(config)["lr"] == 0.02 and flat_values(config)["crop_size"] == (64, 32)
    assert config.resolved_pad_size == (64, 32) and config.replace(pad_size=(80, 80)).resolved_pad_size == (80, 80)
    with pytest.raises(TypeError, match=r"optim must be a OptimSettings, got \{'lr': 0.1\}"):
        TrainConfig(optim={"lr": 0.1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'lr' is given both by name and inside 'optim'"):
        TrainConfig().replace(optim={"lr": 0.1}, lr=0.2)


def test_flat_keywords_make_the_test_record():
    config = TrainConfig().replace(test_mode="slide", slide_crop=(64, 64), test_scale=(128, 96))
    assert config.test == TestSettings(mode="slide", window=(64, 64), stride=(43, 43), scale=(128, 96))
    assert config.to_dict()["test"] == config.test.to_dict() and "test_mode" not in config.to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig().replace(scale=(512, 256)).resolved_test.scale == (512, 256)  # the test scale defaults to it
    assert config.replace(scale=(512, 256)).resolved_test.scale == (128, 96)
    with pytest.raises(ValueError, match=r"test mode 'slide' needs a slide window"):
        TrainConfig().replace(test_mode="slide")


def test_an_old_train_config_json_with_flat_test_settings_loads():
    record = json.loads((LAYOUT_V1 / "train_config.json").read_text())  # written by deeplabv3p 0.1.0
    assert "test_mode" in record["train"] and "test" not in record["train"]
    config = TrainConfig.from_flat(record["train"])
    assert config == TrainConfig().replace(
        iters=5, lr=0.02, test_mode="slide", slide_crop=(48, 48), slide_stride=(32, 32), test_scale=(96, 64)
    )
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['test_window'\]"):
        TrainConfig.from_flat({**record["train"], "test_window": [1, 1]})  # unknown keys stay an error


def test_fit_takes_flat_test_keywords_and_records_them(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", num_train=4, num_val=0, size=64, seed=1)
    model = tiny_model()
    overrides = {**TINY, "iters": 1, "test_mode": "slide", "slide_crop": (48, 48), "test_scale": (64, 64)}
    training.fit(model, SegmentationDataset(root, "train"), out=tmp_path / "run", **overrides)
    test = TestSettings(mode="slide", window=(48, 48), stride=(32, 32), scale=(64, 64))
    assert model.pretrained_cfg.test == test
    record = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert TrainConfig.from_dict(record["train"]).test == test
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['slide_window'\]"):
        training.fit(model, SegmentationDataset(root, "train"), out=tmp_path / "x", slide_window=(4, 4), **TINY)


def test_resume_reads_a_checkpoint_of_the_flat_layout(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", num_train=4, num_val=0, size=64, seed=1)
    data = SegmentationDataset(root, "train")
    overrides = {**TINY, "test_mode": "slide", "slide_crop": (48, 48), "checkpoint_interval": 2, "keep_checkpoints": 0}
    training.fit(tiny_model(), data, out=tmp_path / "run", **overrides)
    runs = tmp_path / "run" / "checkpoints"
    shutil.rmtree(runs / "iter_000004")
    (runs / "latest").write_text("iter_000002\n")
    state = torch.load(runs / "iter_000002" / TRAINING_STATE, weights_only=False)
    flat = flat_values(TrainConfig.from_dict(state["config"]))  # the layout deeplabv3p 0.1.0 wrote: all flat
    state["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items() if k in FLAT_V1}
    torch.save(state, runs / "iter_000002" / TRAINING_STATE)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="resuming with a changed recipe")  # read as the same recipe
        result = training.fit(tiny_model(), data, out=tmp_path / "run", resume=True, **overrides)
    assert result.iterations == 4
