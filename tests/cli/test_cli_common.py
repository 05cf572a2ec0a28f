"""`model_from_args`: the one mapping of --model/--pretrained/--checkpoint onto resolve_source, for every command."""

from __future__ import annotations

import pytest
import torch
from nets import narrow_model

from deeplabv3p.cli import common
from deeplabv3p.inference import model as model_module
from deeplabv3p.pretrained import source


@pytest.mark.parametrize(
    ("model", "pretrained", "default", "expected"),
    [
        ("SAVED", None, False, None),  # a saved folder loads its own weights, whatever the command's default
        ("SAVED", "x.safetensors", False, "x.safetensors"),
        ("hf-hub:org/name", None, False, None),
        ("deeplabv3plus_r50_d8.cityscapes_512x1024_80k", None, False, True),  # a tag loads the tag's weights
        ("deeplabv3plus_r50_d8", None, False, False),  # train, export: an architecture starts untrained
        ("deeplabv3plus_r50_d8", None, True, True),  # evaluate: an architecture means its Cityscapes weights
        ("deeplabv3plus_r50_d8", "ade20k", False, "ade20k"),
    ],
)
def test_weights_each_source_asks_for(monkeypatch, tmp_path, model, pretrained, default, expected):
    calls = []
    # where model_from_args finds them when it runs (the CLI imports no model code to build its parsers)
    monkeypatch.setattr(source, "resolve_source", lambda *args: args)  # (name, pretrained, checkpoint_path)
    monkeypatch.setattr(model_module, "create_model", lambda source, **kwargs: calls.append((source, kwargs)))
    name = str(tmp_path) if model == "SAVED" else model
    common.model_from_args(name, pretrained, "ckpt.pth", default=default, num_classes=3)
    assert calls == [((name, expected, "ckpt.pth"), {"num_classes": 3})]


def test_a_saved_folder_keeps_its_weights_and_an_architecture_alone_is_refused_where_weights_are_needed(tmp_path):
    saved = narrow_model(seed=3)
    saved.save_pretrained(tmp_path)
    loaded = common.model_from_args(str(tmp_path))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in saved.state_dict().items())
    with pytest.raises(ValueError, match=r"needs trained weights.*'deeplabv3plus_r18_d8' is an architecture alone"):
        common.model_from_args("deeplabv3plus_r18_d8", require_weights=True)
