"""The zoo.json loader: every row loads, dataset derivation, and bad records rejected with an error naming them.

Mutations start from the zoo.json the package ships (read through the loader), never a copy of it; the published
facts themselves are checked against the reference in test_zoo.py.
"""

from __future__ import annotations

import copy

import pytest

from deeplabv3p.pretrained import zoo


@pytest.fixture
def data() -> dict:
    """A fresh, mutable parse of the shipped zoo.json."""
    return copy.deepcopy(zoo.read_zoo_json())


def _row(data: dict, name: str) -> dict:
    return next(r for r in data["models"] if f"{r['architecture']}.{r['tag']}" == name)


def test_every_row_loads_once_and_in_file_order(data):
    rows = data["models"]
    assert len(rows) == 43
    assert list(zoo.PRETRAINED_CFGS) == [f"{r['architecture']}.{r['tag']}" for r in rows]
    assert zoo.parse_zoo(data) == (zoo.HUB_ORG, zoo.DATASETS, zoo.PRETRAINED_CFGS)


def test_row_takes_defaults_then_crop_settings_then_its_own_keys(data):
    cfg = zoo.PRETRAINED_CFGS["deeplabv3plus_r50_d8.cityscapes_769x769_80k"]
    crop = data["datasets"]["cityscapes"]["test_by_crop"]["769x769"]
    assert cfg.test.mode == crop["test_mode"] == "slide" and cfg.align_corners is True
    assert cfg.test.tta_ratios == tuple(data["defaults"]["tta_ratios"]) and cfg.mean == tuple(data["defaults"]["mean"])
    _row(data, cfg.name)["tta_flip"] = False
    _row(data, cfg.name)["slide_stride"] = [400, 400]
    changed = zoo.parse_zoo(data).pretrained_cfgs[cfg.name]
    assert changed == cfg.replace(tta_flip=False, slide_stride=(400, 400))


def test_pascal_context_59_is_pascal_context_without_its_first_class():
    full, derived = zoo.DATASETS["pascal_context"], zoo.DATASETS["pascal_context_59"]
    assert derived["classes"] == full["classes"][1:] and derived["palette"] == full["palette"][1:]
    assert full["classes"][0] == "background" and len(derived["classes"]) == 59
    assert (full["reduce_zero_label"], derived["reduce_zero_label"]) == (False, True)
    cfg = zoo.PRETRAINED_CFGS["deeplabv3plus_r101_d8.pascal_context_59_480x480_40k"]
    assert cfg.num_classes == 59 and cfg.classes == derived["classes"] and cfg.reduce_zero_label


def test_derived_dataset_follows_its_source(data):
    datasets = data["datasets"]
    assert "classes" not in datasets["pascal_context_59"]  # derived, not a copied list
    datasets["pascal_context"]["classes"][1] = "aeroplane (renamed)"
    datasets["pascal_context"]["test_by_crop"]["480x480"]["test_scale"] = [600, 600]
    parsed = zoo.parse_zoo(data)
    assert parsed.datasets["pascal_context_59"]["classes"][0] == "aeroplane (renamed)"
    assert parsed.pretrained_cfgs["deeplabv3plus_r101_d8.pascal_context_59_480x480_80k"].test.scale == (600, 600)
    datasets["vaihingen"]["derive"]["drop_first_class"] = True
    assert zoo.parse_zoo(data).datasets["vaihingen"]["classes"] == zoo.DATASETS["potsdam"]["classes"][1:]


@pytest.mark.parametrize(
    ("derive", "message"),
    [
        ({"from": "nowhere"}, "derives from 'nowhere'"),
        ({"from": "vaihingen"}, "derives from 'vaihingen'"),  # a derived dataset is no source
        (
            {"from": "pascal_context", "drop_last": True},
            "dataset 'pascal_context_59' derive: unknown key(s) ['drop_last']",
        ),
        ({"drop_first_class": True}, "dataset 'pascal_context_59' derive: missing key(s) ['from']"),
    ],
)
def test_bad_derive_is_rejected(data, derive, message):
    data["datasets"]["pascal_context_59"]["derive"] = derive
    with pytest.raises(ValueError) as info:
        zoo.parse_zoo(data)
    assert message in str(info.value)


def test_unknown_row_key_names_the_row(data):
    _row(data, "deeplabv3plus_r18_d8.loveda_512x512_80k")["crop"] = [512, 512]
    with pytest.raises(ValueError) as info:
        zoo.parse_zoo(data)
    message = str(info.value)
    assert "(deeplabv3plus_r18_d8.loveda_512x512_80k)" in message and "unknown key(s) ['crop']" in message
    assert "crop_size" in message  # the accepted keys are listed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["datasets"]["isaid"].update(colours=[]), "dataset 'isaid': unknown key(s) ['colours']"),
        (lambda d: d["datasets"]["isaid"].pop("palette"), "dataset 'isaid': missing key(s) ['palette']"),
        (lambda d: d["datasets"]["ade20k"]["test_by_crop"]["512x512"].update(mean=[0, 0, 0]), "'512x512': unknown"),
        (lambda d: d["defaults"].update(classes=["a"]), "defaults: unknown key(s) ['classes']"),
        (lambda d: d.update(version=2), "top level: unknown key(s) ['version']"),
        (lambda d: _row(d, "deeplabv3plus_r50_d8.isaid_896x896_80k")["metrics"].update(miou=1.0), "metrics: unknown"),
        (lambda d: _row(d, "deeplabv3plus_r50_d8.isaid_896x896_80k").pop("iters"), "missing key(s) ['iters']"),
        (lambda d: _row(d, "deeplabv3plus_r50_d8.isaid_896x896_80k").update(dataset="coco"), "unknown dataset 'coco'"),
        (
            lambda d: _row(d, "deeplabv3plus_r50_d8.isaid_896x896_80k").update(architecture="r50"),
            "unknown architecture",
        ),
        (lambda d: _row(d, "deeplabv3plus_r50_d8.isaid_896x896_80k").update(crop_size=[800, 800]), "crop 800x800"),
        (lambda d: _row(d, "deeplabv3plus_r50_d8.isaid_896x896_80k").update(iters=40000), "DATASET_CROP_ITERS"),
        (
            lambda d: d["models"].append(copy.deepcopy(d["models"][0])),
            "model row 43: deeplabv3plus_r50_d8.cityscapes_512x1024_40k is listed twice",
        ),
    ],
)
def test_bad_record_is_rejected_naming_it(data, change, message):
    change(data)
    with pytest.raises(ValueError) as info:
        zoo.parse_zoo(data)
    assert message in str(info.value)


def test_record_of_the_wrong_type_is_a_type_error(data):
    data["models"][3] = ["deeplabv3plus_r50_d8", "cityscapes_512x1024_40k"]  # the old positional form
    with pytest.raises(TypeError, match="model row 3 must be an object, got list"):
        zoo.parse_zoo(data)
