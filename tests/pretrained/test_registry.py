"""Names: architectures, ARCH.TAG tags, dataset aliases, and what a tag does to the built model."""

from __future__ import annotations

import pytest
from nets import narrow_model

import deeplabv3p
from deeplabv3p.pretrained.registry import split_model_name


def test_split_model_name():
    assert split_model_name("deeplabv3plus_r50_d8.cityscapes_769x769_80k") == (
        "deeplabv3plus_r50_d8",
        "cityscapes_769x769_80k",
    )
    assert split_model_name("deeplabv3plus") == ("deeplabv3plus", None)


def test_list_models_with_pretrained_filter():
    assert "deeplabv3plus" not in deeplabv3p.list_models(pretrained=True)
    assert len(deeplabv3p.list_models(pretrained=True)) == 7


def test_missing_tag_lists_the_architectures_tags():
    with pytest.raises(ValueError, match=r"no pretrained weights 'deeplabv3plus_r18b_d8.ade20k'") as info:
        deeplabv3p.get_pretrained_cfg("deeplabv3plus_r18b_d8", "ade20k")
    message = str(info.value)
    assert "cityscapes_512x1024_80k" in message and "cityscapes_769x769_80k" in message
    assert "ade20k_512x512_80k" not in message  # another architecture's tag


def test_tag_sets_classes_and_align_corners_without_loading_weights():
    model = narrow_model("deeplabv3plus_r18_d8.cityscapes_769x769_80k", num_classes=None)
    assert model.num_classes == 19 and model.config.align_corners is True
    assert model.pretrained_cfg.tag == "cityscapes_769x769_80k"
    assert model.pretrained_cfg.classes[0] == "road"


def test_other_num_classes_drops_class_metadata_but_keeps_test_settings():
    model = narrow_model("deeplabv3plus_r18_d8.cityscapes_769x769_80k", num_classes=4)
    assert model.num_classes == 4
    assert model.pretrained_cfg.classes == () and model.pretrained_cfg.test.mode == "slide"
