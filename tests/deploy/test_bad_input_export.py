"""Bad-input catalogue, ONNX export: a write that fails (no permission, disk full) is an OSError naming the file
asked for, never its temporary name, and leaves no temporary and no half-written file behind."""

from __future__ import annotations

import os

import pytest
import torch
from fault_helpers import on_a_full_disk

import deeplabv3p
from deeplabv3p.deploy import export

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model() -> deeplabv3p.DeepLabV3Plus:
    torch.manual_seed(0)
    narrow = dict(encoder_kwargs={"channels": (8, 16, 32, 64)}, decoder_channels=16, low_level_channels=8)
    return deeplabv3p.create_model("deeplabv3plus", encoder="resnet18", num_classes=3, **narrow).eval()


def _refused(*args, **kwargs):
    raise PermissionError(13, "Permission denied", args[2])  # what opening the temporary file raises


def _disk_full(*args, **kwargs):
    with open(args[2], "wb") as f:
        f.write(b"half")
    raise OSError(28, "No space left on device")  # the exporter's write reports no file name


@pytest.mark.parametrize("failure", [_refused, _disk_full], ids=["permission", "disk-full"])
def test_a_failed_write_names_the_target(tmp_path, monkeypatch, model, failure):
    target = tmp_path / "model.onnx"
    monkeypatch.setattr(torch.onnx, "export", failure)
    with pytest.raises(OSError) as info:
        export(model, target, input_size=(64, 64))
    assert info.value.filename == str(target) and str(target) in str(info.value)
    assert ".incomplete" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_named(tmp_path, model):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    with pytest.raises(PermissionError) as info:
        export(model, folder / "model.onnx", input_size=(64, 64))
    assert str(folder / "model.onnx") in str(info.value) and ".incomplete" not in str(info.value)


def test_disk_full_in_a_child_process(tmp_path, model):
    """The real exporter's write fails with EFBIG, as on a full disk: an error naming the file, nothing left."""
    target = tmp_path / "out" / "model.onnx"
    target.parent.mkdir()
    error = on_a_full_disk(lambda: export(model, target, input_size=(64, 64)), 16 * 1024)
    assert str(target) in error and "File too large" in error
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("fmt", ["litert", "coreml"])
def test_a_dynamic_export_of_a_one_size_format_is_refused_first_saying_why_and_how(fmt, model, tmp_path, monkeypatch):
    """Before its extra is even looked for: the fix (--static at the size you run) is the same with or without it."""
    import sys

    from deeplabv3p.deploy.formats import get_format

    monkeypatch.setitem(sys.modules, get_format(fmt).export_packages[0], None)  # as if not installed
    with pytest.raises(ValueError, match=rf"the {fmt} format exports fixed sizes only \(.+\): pass dynamic=False "
                                         r"\(deeplabv3p export --static\) with input_size=\(64, 96\).*predict with "
                                         r"mode=\"slide\" crop_size=\(64, 96\)"):  # fmt: skip
        export(model, tmp_path / f"m{get_format(fmt).suffix}", fmt, input_size=(64, 96))
    assert list(tmp_path.iterdir()) == []
