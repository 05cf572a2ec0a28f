"""`resolve_source`: the one decision of where weights come from, for every name, `pretrained` and checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from nets import narrow_model

import deeplabv3p
from deeplabv3p.pretrained.source import Source, resolve_source
from deeplabv3p.pretrained.state_dict import WEIGHTS_NAME

ARCH = "deeplabv3plus_r50_d8"
CITYSCAPES = f"{ARCH}.cityscapes_512x1024_80k"  # the architecture's best Cityscapes row: pretrained=True
ADE = f"{ARCH}.ade20k_512x512_160k"


@pytest.mark.parametrize(
    ("name", "pretrained", "checkpoint", "kind", "location", "weights_of"),
    [
        (ARCH, None, None, "none", None, None),
        (ARCH, False, None, "none", None, None),
        (ARCH, True, None, "tag", CITYSCAPES, CITYSCAPES),
        (ARCH, "ade20k", None, "tag", ADE, ADE),
        (CITYSCAPES, None, None, "none", None, CITYSCAPES),  # the tag's config, no weights unless asked
        (CITYSCAPES, True, None, "tag", CITYSCAPES, CITYSCAPES),
        (ARCH, "x.pth", None, "file", "x.pth", None),  # a checkpoint suffix names a file, not a tag
        (ARCH, "dir/x", None, "file", "dir/x", None),  # so does a path separator
        (ARCH, None, "ckpt.pth", "file", "ckpt.pth", None),
        (ARCH, "ade20k", "ckpt.pth", "file", "ckpt.pth", ADE),  # the tag's metadata, the file's weights
        (ARCH, "x.safetensors", "ckpt.pth", "file", "x.safetensors", None),  # pretrained=FILE wins
    ],
)
def test_registered_names(name, pretrained, checkpoint, kind, location, weights_of):
    source = resolve_source(name, pretrained, checkpoint)
    assert (source.kind, source.location, source.exact) == (kind, location, False)
    assert (source.pretrained_cfg.name if source.pretrained_cfg else None) == weights_of
    if source.pretrained_cfg is not None:  # the tag sets the class count and align_corners of the network
        assert source.config.num_classes == source.pretrained_cfg.num_classes


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return narrow_model(seed=1).save_pretrained(tmp_path_factory.mktemp("saved") / "model")


def test_a_saved_folder_brings_its_config_and_own_weights(saved):
    model = deeplabv3p.create_model(str(saved))
    own = resolve_source(saved)
    assert (own.kind, own.location, own.exact) == ("saved", str(saved), True)
    assert own.config == model.config and own.pretrained_cfg == model.pretrained_cfg
    assert own.weights_file() == saved / WEIGHTS_NAME
    fetched = own.fetched()
    assert (fetched.kind, fetched.location, fetched.exact) == ("file", saved / WEIGHTS_NAME, True)
    assert resolve_source(saved, False).kind == "none"
    other = resolve_source(saved, "w.safetensors")
    assert (other.kind, other.location, other.exact) == ("file", "w.safetensors", False)
    assert resolve_source(saved, None, "ckpt.pth").location == "ckpt.pth"
    with pytest.raises(ValueError, match=r"saved model with its own weights.*got 'cityscapes'"):
        resolve_source(saved, "cityscapes")


def test_create_model_builds_what_a_source_says(saved):
    source = resolve_source(saved)
    a, b = deeplabv3p.create_model(source), deeplabv3p.create_model(str(saved))
    assert all(v.equal(b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(TypeError, match=r"already says where the weights are"):
        deeplabv3p.create_model(source, pretrained=True)


def test_bad_names_and_arguments():
    with pytest.raises(FileNotFoundError, match=r"no folder 'no/such/folder'.*'hf-hub:no/such/folder'"):
        resolve_source("no/such/folder")
    with pytest.raises(TypeError, match=r"model_name must be a non-empty str or Path"):
        resolve_source("")
    with pytest.raises(TypeError, match=r"checkpoint_path must be a file path"):
        resolve_source(ARCH, None, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pretrained must be a bool, a tag or a file path"):
        resolve_source(ARCH, 1.0)  # type: ignore[arg-type]


def test_a_source_is_a_frozen_record():
    source = resolve_source(ARCH)
    assert isinstance(source, Source)
    with pytest.raises(AttributeError):
        source.kind = "file"  # type: ignore[misc]
