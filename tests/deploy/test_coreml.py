"""Core ML export: an ML program with named input and output, fixed size, the config in user_defined_metadata, and
the inspector that checks the spec on Linux (Core ML cannot run here). Converting a DeepLabV3+ takes about a minute
on two cores, so that test is slow; the inspector's refusals run on one-convolution specs."""

from __future__ import annotations

import sys

import pytest
import torch
from nets import narrow_model, randomize_bn

from deeplabv3p.deploy import ExportCheckError, export, load
from deeplabv3p.deploy.coreml import inspect
from deeplabv3p.deploy.metadata import KEY, from_json, to_json

ct = pytest.importorskip("coremltools")


@pytest.fixture(scope="module")
def model():
    return randomize_bn(narrow_model(num_classes=5, deep_stem=True).eval())


def _spec(path, out_channels: int, metadata: str | None, output: str = "logits") -> None:
    """A one-convolution ML program named like an export: a stand-in for a spec the inspector must check."""
    conv = torch.nn.Conv2d(3, out_channels, 1).eval()
    program = torch.export.export(conv, (torch.randn(1, 3, 64, 64),)).run_decompositions({})
    converted = ct.convert(program, convert_to="mlprogram", inputs=[ct.TensorType(name="input", shape=(1, 3, 64, 64))],
                           outputs=[ct.TensorType(name=output)])  # fmt: skip
    if metadata is not None:
        converted.user_defined_metadata[KEY] = metadata
    converted.save(str(path))


@pytest.mark.slow
def test_export_writes_a_checked_spec(model, tmp_path):
    report = export(model, tmp_path / "model.mlpackage", "coreml", input_size=(64, 96), dynamic=False)
    assert report.path.is_dir() and [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"]
    assert report.agreements == ()
    assert "Core ML cannot run on Linux: the spec was checked" in report.notes[0]
    spec = ct.models.MLModel(str(report.path), skip_model_load=True).get_spec()
    assert [f.name for f in spec.description.input] == ["input"]
    assert list(spec.description.output[0].type.multiArrayType.shape) == [1, 5, 64, 96]
    config, cfg = from_json(dict(spec.description.metadata.userDefined)[KEY], "spec")
    assert config == model.config and cfg.num_classes == 5
    assert spec.description.output[0].type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    with pytest.raises(ValueError, match="a coreml export cannot run here"):
        load(report.path)


def test_inspector_accepts_a_matching_spec_and_refuses_another_models(model, tmp_path):
    five = tmp_path / "five.mlpackage"
    _spec(five, 5, to_json(model))
    notes = inspect(five, model, input_size=(64, 64), dynamic=False)
    assert "output 'logits' (1, 5, 64, 64) (5 classes)" in notes[0]
    with pytest.raises(ExportCheckError, match=r"outputs \[\('logits', \(1, 5, 64, 64\)\)\], expected \[\('logits', "
                                               r"\(1, 5, 64, 96\)\)\]"):  # fmt: skip
        inspect(five, model, input_size=(64, 64 + 32), dynamic=False)
    four = tmp_path / "four.mlpackage"
    _spec(four, 4, None, output="out")
    with pytest.raises(ExportCheckError, match=r"outputs \[\('out', \(1, 4, 64, 64\)\)\].*no 'deeplabv3p.config'"):
        inspect(four, model, input_size=(64, 64), dynamic=False)
    other = narrow_model(num_classes=5, deep_stem=False)
    with pytest.raises(ExportCheckError, match=r"metadata config .* differs from the model's"):
        inspect(five, other, input_size=(64, 64), dynamic=False)


def test_bad_exports_are_refused_before_any_work(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"the coreml format exports fixed sizes only .*--static"):
        export(model, tmp_path / "m.mlpackage", "coreml", input_size=(64, 64))
    with pytest.raises(ValueError, match=r"does not end with '\.mlpackage'"):
        export(model, tmp_path / "m.mlmodel", "coreml", dynamic=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        export(model, tmp_path / "m.mlpackage", "coreml", input_size=(64, 64), dynamic=False, precision="int4")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[coreml\]'"):
        export(model, tmp_path / "m.mlpackage", "coreml", dynamic=False)


def test_cli_refuses_a_dynamic_core_ml_export_and_running_one(tmp_path, capsys):
    from deeplabv3p.cli import main

    out = tmp_path / "m.mlpackage"
    assert main(["export", "deeplabv3plus_r18_d8", "--format", "coreml", "--out", str(out), "--size", "64x64"]) == 2
    assert "the coreml format exports fixed sizes only" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    assert main(["predict", str(image), "--model", str(out), "--out", str(tmp_path / "masks")]) == 2
    assert "a coreml export cannot run here" in capsys.readouterr().err
