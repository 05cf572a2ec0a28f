"""PredictOptions: one validated record of every predict option, shared by predict, predict_iter and model.predict."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch
from parity import build

import deeplabv3p
from deeplabv3p import PredictOptions
from deeplabv3p.inference.options import FIELDS, make_options


def test_values_are_normalized():
    opts = PredictOptions(crop_size=64, stride=(32, 48), tta=True, tta_ratios=[1, 1.5], dtype="bfloat16")
    assert opts.crop_size == (64, 64) and opts.stride == (32, 48)
    assert opts.tta_ratios == (1.0, 1.5) and opts.dtype is torch.bfloat16
    assert PredictOptions(dtype=torch.float16).dtype is torch.float16
    assert PredictOptions(test_scale=[2048, 1024]).test_scale == (2048, 1024)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "sliding"}, ValueError, r"mode must be one of \['whole', 'slide'\], got 'sliding'"),
        ({"tta": 1}, TypeError, r"tta must be a bool \(True or False\), got 1"),
        ({"resize": False, "test_scale": (64, 64)}, ValueError, "one or the other"),
        ({"crop_size": (64, 0)}, ValueError, r"crop_size must be an int >= 1 or a pair \(h, w\) of them"),
        ({"stride": True}, TypeError, "stride must be an int >= 1 or a pair"),
        ({"tta_flip": False}, ValueError, "apply when tta=True"),
        ({"tta": True, "tta_ratios": ()}, ValueError, "tta_ratios must be a non-empty sequence"),
        ({"tta": True, "tta_ratios": 1.0}, ValueError, "tta_ratios must be"),
        ({"tta": True, "tta_ratios": (1.0, float("nan"))}, ValueError, "tta_ratios entries must be a finite"),
        ({"tta": True, "tta_flip": "yes"}, TypeError, "tta_flip must be a bool"),
        ({"dtype": torch.int8}, ValueError, r"dtype must be one of .*got torch.int8"),
        ({"dtype": "half"}, ValueError, "their names"),
        ({"window_batch_size": 0}, ValueError, "window_batch_size must be an int >= 1, got 0"),
        ({"window_batch_size": 2.0}, TypeError, "window_batch_size must be an int"),
    ],
)
def test_bad_options_name_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        PredictOptions(**kwargs)


def test_replace_and_overrides_are_validated():
    base = PredictOptions(mode="slide", crop_size=32)
    assert base.replace(tta=True).tta and base.replace(tta=True).crop_size == (32, 32)
    assert base.replace() is base
    with pytest.raises(TypeError, match=r"unknown predict option\(s\) \['modes'\]; accepted: \['mode',"):
        base.replace(modes="whole")
    with pytest.raises(ValueError, match="window_batch_size"):
        make_options(base, window_batch_size=-1)
    assert make_options(None, tta=True) == PredictOptions(tta=True)
    with pytest.raises(TypeError, match=r"options must be a deeplabv3p\.PredictOptions, got dict"):
        make_options({"tta": True})


def test_every_field_is_documented_once():
    fields = dataclasses.fields(PredictOptions)
    assert tuple(f.name for f in fields) == FIELDS
    for f in fields:
        assert f.metadata["help"] and f"{f.name}: {f.metadata['help']}" in PredictOptions.__doc__


def test_predict_takes_options_and_overrides():
    """predict(options), predict(**fields) and model.predict agree; overrides apply on top of the options."""
    model = build("r18_v1b_d8_slide")
    image = np.random.default_rng(0).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    slide = PredictOptions(mode="slide", crop_size=32, stride=24, return_probs=True)
    a = deeplabv3p.predict(model, image, slide)
    b = model.predict(image, mode="slide", crop_size=32, stride=24, return_probs=True)
    np.testing.assert_array_equal(a.probs, b.probs)
    c = model.predict(image, slide, stride=32)  # a different stride changes the result
    assert np.abs(c.probs - a.probs).max() > 1e-4
    whole = model.predict(image, slide.replace(mode="whole", crop_size=None, stride=None))
    assert whole.probs is not None and whole.probs.shape == (3, 50, 70)
    with pytest.raises(TypeError, match="unknown predict option"):
        model.predict(image, crop=32)


def test_signatures_name_the_options():
    for fn in (deeplabv3p.predict, deeplabv3p.predict_iter, deeplabv3p.DeepLabV3Plus.predict):
        parameters = inspect.signature(fn).parameters
        assert "options" in parameters and parameters["options"].default is None
