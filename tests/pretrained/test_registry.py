"""Names: architectures, ARCH.TAG tags, dataset aliases, and what a tag does to the built model."""

from __future__ import annotations

import pytest

import deeplabv3p
from deeplabv3p.pretrained.registry import split_model_name

NARROW = dict(encoder_kwargs={"channels": (8, 16, 32, 64)}, decoder_channels=16, low_level_channels=8, aux_channels=8)


def test_split_model_name():
    assert split_model_name("deeplabv3plus_r50_d8.cityscapes_769x769_80k") == (
        "deeplabv3plus_r50_d8",
        "cityscapes_769x769_80k",
    )
    assert split_model_name("deeplabv3plus") == ("deeplabv3plus", None)


def test_list_models_with_pretrained_filter():
    assert "deeplabv3plus" not in deeplabv3p.list_models(pretrained=True)
    assert len(deeplabv3p.list_models(pretrained=True)) == 7


def test_dataset_alias_picks_best_single_scale_row():
    cfg = deeplabv3p.get_pretrained_cfg("deeplabv3plus_r101_d8", "cityscapes")
    rows = [deeplabv3p.get_pretrained_cfg(n) for n in deeplabv3p.list_pretrained("deeplabv3plus_r101_d8.cityscapes*")]
    assert len(rows) == 5
    assert cfg.metrics["mIoU"] == max(r.metrics["mIoU"] for r in rows)
    assert cfg.tag == "cityscapes_512x1024_80k"


def test_missing_tag_lists_the_available_ones():
    with pytest.raises(
        ValueError, match=r"(?s)no pretrained weights 'deeplabv3plus_r18b_d8.ade20k'.*cityscapes_512x1024_80k"
    ):
        deeplabv3p.get_pretrained_cfg("deeplabv3plus_r18b_d8", "ade20k")


def test_tag_sets_classes_and_align_corners_without_loading_weights():
    model = deeplabv3p.create_model("deeplabv3plus_r18_d8.cityscapes_769x769_80k", **NARROW)
    assert model.num_classes == 19 and model.config.align_corners is True
    assert model.pretrained_cfg.tag == "cityscapes_769x769_80k"
    assert model.pretrained_cfg.classes[0] == "road"


def test_other_num_classes_drops_class_metadata_but_keeps_test_settings():
    model = deeplabv3p.create_model("deeplabv3plus_r18_d8.cityscapes_769x769_80k", num_classes=4, **NARROW)
    assert model.num_classes == 4
    assert model.pretrained_cfg.classes == () and model.pretrained_cfg.test_mode == "slide"
