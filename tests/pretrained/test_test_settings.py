"""`TestSettings`, the one definition of how weights are tested: its checks and defaults, its place in
`PretrainedCfg` (and the flat view of it), `PredictOptions` laid over it, and config.json files of schema 1, which
held the settings as flat fields."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from nets import narrow_model

import deeplabv3p
from deeplabv3p.fields import flat_fields, nest
from deeplabv3p.inference.options import PredictOptions, settings_in_force
from deeplabv3p.pretrained.config import CONFIG_SCHEMA_VERSION, PretrainedCfg
from deeplabv3p.pretrained.saved import config_dict, parse_config
from deeplabv3p.pretrained.test_settings import MMSEG_TTA_RATIOS, TestSettings, default_stride

LAYOUT_V1 = Path(__file__).parents[1] / "data" / "layout_v1"


def test_defaults_are_mmsegs_whole_image_test():
    test = TestSettings()
    assert (test.mode, test.scale, test.keep_ratio, test.window, test.stride) == ("whole", None, True, None, None)
    assert test.tta_ratios == MMSEG_TTA_RATIOS == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and test.tta_flip is True


@pytest.mark.parametrize(
    ("window", "stride"), [((769, 769), (513, 513)), ((480, 480), (320, 320)), ((64, 49), (43, 33))]
)
def test_a_window_without_stride_gets_two_thirds_of_it_rounded_up(window, stride):
    assert default_stride(window) == stride
    assert TestSettings(mode="slide", window=window).stride == stride
    assert TestSettings(mode="slide", window=window, stride=(7, 9)).stride == (7, 9)  # a given stride stays


def test_values_are_normalised():
    test = TestSettings(mode="slide", scale=[2048, 1024], window=64, tta_ratios=[1, 1.5])
    assert (test.scale, test.window, test.stride, test.tta_ratios) == ((2048, 1024), (64, 64), (43, 43), (1.0, 1.5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "sliding"}, ValueError, r"mode must be one of \['whole', 'slide'\], got 'sliding'"),
        ({"mode": "slide"}, ValueError, r"test mode 'slide' needs a slide window .*slide_crop"),
        ({"stride": (32, 32)}, ValueError, r"stride \(32, 32\) given without a slide window"),
        ({"scale": (64,)}, ValueError, r"scale must be an int >= 1 or a pair"),
        ({"window": (64, 0)}, ValueError, r"window must be an int >= 1 or a pair"),
        ({"keep_ratio": 1}, TypeError, r"keep_ratio must be a bool"),
        ({"tta_ratios": ()}, ValueError, r"tta_ratios must be a non-empty sequence of positive numbers"),
        ({"tta_ratios": "1.0"}, ValueError, r"tta_ratios must be a non-empty sequence"),
        ({"tta_ratios": (1.0, 0.0)}, ValueError, r"tta_ratios entries must be a finite number > 0, got 0\.0"),
        ({"tta_flip": "yes"}, TypeError, r"tta_flip must be a bool"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        TestSettings(**kwargs)


def test_pretrained_cfg_holds_one_test_record_and_its_flat_view():
    cfg = PretrainedCfg().replace(test_mode="slide", slide_crop=(64, 64), test_scale=(128, 96), tta_flip=False)
    assert cfg.test == TestSettings(mode="slide", window=(64, 64), scale=(128, 96), tta_flip=False)
    assert cfg.replace(slide_stride=(8, 8)).test.window == (64, 64)  # the other settings are kept
    flat = {name for name, (holder, _) in flat_fields(PretrainedCfg).items() if holder == "test"}
    assert flat == {"test_mode", "test_scale", "keep_ratio", "slide_crop", "slide_stride", "tta_ratios", "tta_flip"}
    data = cfg.to_dict()
    assert data["test"]["window"] == [64, 64] and "test_mode" not in data
    assert PretrainedCfg.from_dict(json.loads(json.dumps(data))) == cfg
    with pytest.raises(ValueError, match=r"unknown TestSettings field\(s\) \['crop'\]"):
        PretrainedCfg.from_dict({**data, "test": {**data["test"], "crop": [1, 1]}})
    with pytest.raises(ValueError, match=r"unknown PretrainedCfg field\(s\) \['test_scale'\]"):
        PretrainedCfg.from_dict({**data, "test_scale": [1, 1]})  # the nested layout is strict: no flat fields
    with pytest.raises(ValueError, match=r"'test_mode' is given both by name and inside 'test'"):
        nest(PretrainedCfg, {"test": {"mode": "whole"}, "test_mode": "slide"})


def test_fine_tuning_metadata_keeps_the_test_settings():
    cfg = PretrainedCfg(num_classes=19).replace(test_mode="slide", slide_crop=(64, 64), tta_ratios=(1.0, 2.0))
    assert cfg.for_new_classes(4).test == cfg.test


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"mode": "slide", "window": (64, 64), "stride": (40, 40), "scale": (128, 96)}),
        ({"mode": "whole"}, {"mode": "whole", "window": None, "stride": None, "scale": (128, 96)}),
        ({"crop_size": 30}, {"mode": "slide", "window": (30, 30), "stride": (20, 20)}),  # not the weights' stride
        ({"stride": 16}, {"mode": "slide", "window": (64, 64), "stride": (16, 16)}),
        ({"resize": False}, {"scale": None}),
        ({"test_scale": (50, 40)}, {"scale": (50, 40)}),
        ({"tta": True, "tta_ratios": (1.0,), "tta_flip": True}, {"tta_ratios": (1.0,), "tta_flip": True}),
    ],
)
def test_predict_options_are_an_overlay_on_the_weights_settings(options, expected):
    weights = TestSettings(mode="slide", window=(64, 64), stride=(40, 40), scale=(128, 96), tta_flip=False)
    in_force = settings_in_force(weights, PredictOptions(**options), crop_size=(48, 48))
    assert in_force == weights.replace(**expected)


def test_slide_over_whole_weights_uses_their_training_crop():
    in_force = settings_in_force(TestSettings(), PredictOptions(mode="slide"), crop_size=(48, 48))
    assert (in_force.window, in_force.stride) == ((48, 48), (32, 32))
    with pytest.raises(ValueError, match=r"mode='slide' needs a window: these weights define none"):
        settings_in_force(TestSettings(), PredictOptions(mode="slide"))


def test_a_schema_1_config_json_with_flat_test_settings_loads(tmp_path):
    data = json.loads((LAYOUT_V1 / "config.json").read_text())  # written by deeplabv3p 0.1.0 before the change
    assert data["schema_version"] == 1 and CONFIG_SCHEMA_VERSION >= 2 and "test_mode" in data["pretrained_cfg"]
    config, cfg = parse_config(data)
    assert cfg.test == TestSettings(mode="slide", scale=(128, 96), window=(64, 64), stride=(40, 40), tta_flip=False)
    assert cfg.classes == ("a", "b", "c") and cfg.crop_size == (64, 64)
    # a saved folder whose config.json is of schema 1 builds the same model, and saves it again in schema 2
    model = narrow_model("deeplabv3plus_r18_d8", num_classes=3)
    folder = model.save_pretrained(tmp_path / "old")
    shutil.copy(LAYOUT_V1 / "config.json", folder / "config.json")
    loaded = deeplabv3p.create_model(str(folder))
    assert loaded.config == config and loaded.pretrained_cfg == cfg
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    again = json.loads((loaded.save_pretrained(tmp_path / "new") / "config.json").read_text())
    assert again["schema_version"] == CONFIG_SCHEMA_VERSION and again["pretrained_cfg"]["test"]["stride"] == [40, 40]


def test_a_schema_1_config_json_missing_a_flat_test_setting_is_refused():
    data = json.loads((LAYOUT_V1 / "config.json").read_text())
    del data["pretrained_cfg"]["slide_stride"]
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['test\.stride'\], which config schema 1 requires"):
        parse_config(data)
    data["schema_version"] = 2  # the flat layout is schema 1's only
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['test'\], which config schema 2 requires"):
        parse_config(data)


def test_a_schema_2_config_json_without_bands_loads_and_schema_3_requires_them():
    """`pretrained_cfg.bands` came with schema 3: a file saved before it means no bands (the band rule)."""
    model = narrow_model("deeplabv3plus_r18_d8", num_classes=3)
    data = json.loads(json.dumps(config_dict(model.config, model.pretrained_cfg.replace(bands=(3, 2, 1)))))
    assert data["schema_version"] == CONFIG_SCHEMA_VERSION == 3
    assert parse_config(data)[1].bands == (3, 2, 1)
    del data["pretrained_cfg"]["bands"]
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['bands'\], which config schema 3 requires"):
        parse_config(data)
    data["schema_version"] = 2
    assert parse_config(data)[1].bands is None
