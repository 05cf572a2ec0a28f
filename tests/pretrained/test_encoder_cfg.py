"""Normalisation follows the encoder's weights: timm's pretrained config -> model.pretrained_cfg -> predict, fit,
evaluate and config.json; explicit mean/std and their checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm.models
import timm.models._builder
import torch
from train_helpers import one_thread  # noqa: F401  (autouse fixture)
from zoo_helpers import GOLDEN_NAME, GOLDEN_PTH, register_golden

import deeplabv3p
from deeplabv3p.inference.pipeline import resolve_settings
from deeplabv3p.pretrained.config import PretrainedCfg
from deeplabv3p.pretrained.encoder_cfg import from_timm, timm_pretrained_cfg
from deeplabv3p.pretrained.network import PROBE_TIMEOUT_ENV
from deeplabv3p.train.demo import make_synthetic_dataset

IMAGENET_255 = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
HALF_255 = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
NARROW = {"decoder_channels": 16, "low_level_channels": 8, "num_classes": 3}


@pytest.fixture
def timm_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """timm's weight loading replaced by a recorder: encoder_pretrained=True builds without downloading (and
    without the connection check that comes before a download: the recorder stands in for the network)."""
    loaded: list[str] = []
    monkeypatch.setenv(PROBE_TIMEOUT_ENV, "0")

    def load_pretrained(model: torch.nn.Module, pretrained_cfg: dict, **kwargs: object) -> None:
        loaded.append(f"{pretrained_cfg['architecture']}.{pretrained_cfg['tag']}")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", load_pretrained)
    return loaded


@pytest.mark.parametrize(
    ("encoder", "expected"), [("xception65", HALF_255), ("resnet50", IMAGENET_255), ("inception_v3", HALF_255)]
)
def test_timm_configs_give_the_weights_statistics_on_the_0_255_scale(encoder, expected):
    cfg = from_timm(PretrainedCfg(), timm_pretrained_cfg(encoder))  # timm's configs are data: nothing downloaded
    assert (cfg.mean, cfg.std) == expected
    assert cfg.test.mode == "whole" and cfg.crop_size is None
    assert any("timm's pretrained config" in note for note in cfg.notes)


def test_a_fixed_size_encoder_gets_its_input_size_as_crop_and_slide_window():
    timm_cfg = timm_pretrained_cfg("botnet26t_256")
    assert timm_cfg["fixed_input_size"]
    cfg = from_timm(PretrainedCfg(), timm_cfg)
    assert cfg.crop_size == (256, 256) and cfg.test.mode == "slide"
    assert cfg.test.window == (256, 256) and cfg.test.stride == (171, 171)


def test_xception65_model_normalises_with_half_in_predict_and_config(timm_loads, tmp_path):
    model = deeplabv3p.create_model("deeplabv3plus", encoder="xception65", encoder_pretrained=True, **NARROW)
    assert timm_loads == ["xception65.ra3_in1k"]
    assert (model.pretrained_cfg.mean, model.pretrained_cfg.std) == HALF_255
    settings = resolve_settings(model)
    assert (settings.mean, settings.std) == HALF_255
    saved = json.loads((model.save_pretrained(tmp_path / "m") / "config.json").read_text())["pretrained_cfg"]
    assert (tuple(saved["mean"]), tuple(saved["std"])) == HALF_255
    assert (deeplabv3p.create_model(str(tmp_path / "m")).pretrained_cfg.mean) == HALF_255[0]
    # what the network is fed: (x - 127.5) / 127.5
    seen = []
    model.eval().register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    image = np.full((32, 32, 3), 255, np.uint8)
    model.predict(image, resize=False)
    torch.testing.assert_close(seen[0], torch.ones(1, 3, 32, 32))


def test_encoder_statistics_reach_fit_and_evaluate(timm_loads, tmp_path, monkeypatch):
    from deeplabv3p import train as training
    from deeplabv3p.train import step

    data = make_synthetic_dataset(tmp_path / "data", num_train=2, num_val=1, size=48, seed=0)
    model = deeplabv3p.create_model(
        "deeplabv3plus", encoder="test_resnet", encoder_pretrained=True, num_classes=5, decoder_channels=16
    )
    used = []
    real = step.normalize

    def recording(x: torch.Tensor, mean: tuple, std: tuple, sizes: torch.Tensor | None = None) -> torch.Tensor:
        used.append((mean, std))
        return real(x, mean, std, sizes)

    monkeypatch.setattr(step, "normalize", recording)
    train_set = deeplabv3p.SegmentationDataset(data, "train")
    result = training.fit(
        model, train_set, deeplabv3p.SegmentationDataset(data, "val"), out=tmp_path / "run",
        iters=1, batch_size=2, crop_size=(32, 32), num_workers=0, progress=False,
    )  # fmt: skip
    assert used and all((tuple(m), tuple(s)) == HALF_255 for m, s in used)
    best = deeplabv3p.create_model(str(result.best_path))
    assert (best.pretrained_cfg.mean, best.pretrained_cfg.std) == HALF_255
    assert resolve_settings(best).mean == HALF_255[0]


def test_imagenet_encoder_untrained_encoder_and_loaded_weights_keep_imagenet_statistics(timm_loads, monkeypatch):
    narrow = {**NARROW, "encoder": "resnet18", "encoder_kwargs": {"channels": (8, 16, 32, 64)}}
    model = deeplabv3p.create_model("deeplabv3plus", encoder_pretrained=True, **narrow)
    assert (model.pretrained_cfg.mean, model.pretrained_cfg.std) == IMAGENET_255
    model = deeplabv3p.create_model("deeplabv3plus", encoder_pretrained=False, **{**narrow, "encoder": "test_resnet"})
    assert timm_loads == ["resnet18.a1_in1k"]  # no timm weights, so mmseg's default statistics stay
    assert (model.pretrained_cfg.mean, model.pretrained_cfg.std) == IMAGENET_255
    register_golden(monkeypatch)  # segmentation weights loaded: encoder_pretrained is moot, the tag's statistics hold
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH, encoder_pretrained=True)
    assert timm_loads == ["resnet18.a1_in1k"]
    assert (model.pretrained_cfg.mean, model.pretrained_cfg.std) == IMAGENET_255


def test_pretrained_cfg_overlay_in_encoder_kwargs_is_followed(timm_loads):
    overlay = {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)}
    kwargs = {**NARROW, "encoder": "test_resnet", "encoder_kwargs": {"pretrained_cfg_overlay": overlay}}
    model = deeplabv3p.create_model("deeplabv3plus", encoder_pretrained=True, **kwargs)
    assert model.pretrained_cfg.mean == (25.5, 51.0, 76.5) and model.pretrained_cfg.std == (102.0, 127.5, 153.0)


def test_explicit_statistics_win_and_are_checked(timm_loads):
    kwargs = {**NARROW, "encoder": "test_resnet"}
    model = deeplabv3p.create_model("deeplabv3plus", encoder_pretrained=True, mean=(1, 2, 3), std=(4, 5, 6), **kwargs)
    assert model.pretrained_cfg.mean == (1.0, 2.0, 3.0) and model.pretrained_cfg.std == (4.0, 5.0, 6.0)
    cases = [
        ({"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}, ValueError, "0..1 scale.*multiply them by 255"),
        ({"mean": (1200.0, 900.0, 800.0)}, ValueError, r"outside 0..255.*255 / 65535"),
        ({"mean": (1.0, 2.0, 3.0, 4.0), "std": (1.0, 2.0, 3.0)}, ValueError, "mean has 4 values but std has 3"),
        ({"mean": (1.0, 2.0, 3.0)}, ValueError, "mean= given without std=: give both"),
        ({"std": (1.0, 0.0, 1.0)}, ValueError, "std entries must be a finite number > 0, got 0.0"),
        ({"mean": "imagenet"}, TypeError, "non-empty tuple of numbers"),
        ({"mean": (1, 2, 3, 4, 5), "std": (1, 2, 3, 4, 5), "in_chans": 4}, ValueError, "5 values but .* in_chans=4"),
    ]  # fmt: skip
    for extra, error, match in cases:
        with pytest.raises(error, match=match):
            deeplabv3p.create_model("deeplabv3plus", **{**kwargs, **extra})


def test_raster_bands_are_checked_and_dropped_when_the_band_count_changes():
    from deeplabv3p.pretrained.config import PretrainedCfg

    cfg = PretrainedCfg(bands=[4, 3, 2])
    assert cfg.bands == (4, 3, 2) and PretrainedCfg.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"bands=\(4, 3\) selects 2 band\(s\) but a model of in_chans=3 reads 1 or 3"):
        PretrainedCfg(bands=(4, 3))
    assert PretrainedCfg(bands=(4,)).bands == (4,)  # one band for an RGB model: gray repeated, as the readers do
    with pytest.raises(ValueError, match=r"bands=\(4,\) selects 1 band\(s\) but a model of in_chans=4 reads 4"):
        PretrainedCfg(bands=(4,), mean=(1.0, 2.0, 3.0, 4.0), std=(1.0,) * 4)
    with pytest.raises(ValueError, match="a band appears twice"):
        PretrainedCfg(bands=(2, 2, 1))
    assert cfg.for_in_chans(3).bands == (4, 3, 2)  # same band count: kept
    assert cfg.for_in_chans(4).bands is None and cfg.for_in_chans(1).bands is None  # statistics spread: bands unknown
