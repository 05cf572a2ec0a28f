"""Export to ONNX through `deeplabv3p.deploy.export`: dynamic shapes, the proof against eager PyTorch under
onnxruntime, nothing published when the proof fails, atomic writes, the CLI command."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from nets import narrow_model, randomize_bn

import deeplabv3p
from deeplabv3p.cli import main
from deeplabv3p.deploy import Bounds, ExportCheckError, OnnxSegmenter, export
from deeplabv3p.deploy import onnx_export as onnx_export_module
from deeplabv3p.deploy.opset import DEFAULT_OPSET
from deeplabv3p.deploy.proof import FP32, compare, synthetic_inputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def export_model(**overrides) -> deeplabv3p.DeepLabV3Plus:
    """A small mmseg R-18-D8 (deep stem, output stride 8) with non-trivial BatchNorm statistics, in eval mode."""
    return randomize_bn(narrow_model(num_classes=5, deep_stem=True, **overrides).eval())


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def test_dynamic_export_is_proven_at_two_sizes(tmp_path):
    model = export_model()
    report = export(model, tmp_path / "model.onnx", input_size=(64, 96))
    path = report.path
    assert path == tmp_path / "model.onnx" and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "no temporary file is left behind"
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == DEFAULT_OPSET
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert not any(n.op_type == "BatchNormalization" for n in graph.graph.node), "the exporter folds BatchNorm"
    assert [a.size for a in report.agreements] == [(64, 96), (max(8, 64 // 2 + 7), 96 // 2 + 5)]
    for a in report.agreements:
        assert a.rel_diff <= FP32.rtol and a.label_agreement >= FP32.labels
    assert "labels" in "\n".join(report.lines())
    # Batch is dynamic too.
    x = torch.randn(3, 3, 72, 40)
    with torch.inference_mode():
        expected = model(x)
    got = run_onnx(path, x)
    assert got.shape == (3, 5, 72, 40)
    assert np.abs(got - expected.numpy()).max() <= FP32.rtol * expected.abs().max().item()


def test_static_export(tmp_path):
    model = export_model()
    report = export(model, tmp_path / "static.onnx", dynamic=False, input_size=(64, 64), opset=13)
    graph = onnx.load(str(report.path))
    assert graph.opset_import[0].version == 13
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    assert [a.size for a in report.agreements] == [(64, 64)]
    segmenter = OnnxSegmenter(report.path)
    assert segmenter.static_size == (64, 64)
    with pytest.raises(ValueError, match=r"exported for 64x64 \(HxW\) inputs only and was given 64x96.*dynamic"):
        segmenter(torch.randn(1, 3, 64, 96))


def test_align_corners_and_odd_channels(tmp_path):
    model = export_model(align_corners=True, in_chans=4)
    report = export(model, tmp_path / "m.onnx", input_size=(48, 64))
    assert all(a.rel_diff <= FP32.rtol for a in report.agreements)
    assert OnnxSegmenter(report.path).config.in_chans == 4


def test_an_export_that_disagrees_is_never_published(tmp_path, monkeypatch):
    model = export_model()
    other = export_model()
    with torch.no_grad():
        other.classifier.conv.bias.add_(1.0 + torch.arange(5.0))
    real_write = onnx_export_module.write
    monkeypatch.setattr(onnx_export_module, "write", lambda m, path, **kw: real_write(other, path, **kw))
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ExportCheckError, match=r"does not segment as the PyTorch model does.*nothing was written"):
        export(model, target, input_size=(64, 64))
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    # The same file against its own model passes, so the refusal above came from the disagreement.
    monkeypatch.undo()
    agreement = compare(other, OnnxSegmenter(export(other, tmp_path / "o.onnx", input_size=(64, 64)).path),
                        synthetic_inputs(3, (64, 64)))  # fmt: skip
    assert agreement.within(FP32)


def test_bounds_are_enforced(tmp_path):
    with pytest.raises(ExportCheckError, match=r"labels >= 100\.0% equal, relative logit difference <= 0e\+00"):
        export(export_model(), tmp_path / "m.onnx", input_size=(64, 64), bounds=Bounds(labels=1.0, rtol=0.0))
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_existing_file_alone(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")

    def broken(*args, **kwargs):
        with open(args[2], "wb") as f:
            f.write(b"half")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export(export_model(), target, input_size=(64, 64))
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_bad_arguments(tmp_path):
    model = export_model()
    with pytest.raises(ValueError, match="opset must be an int >= 11"):
        export(model, tmp_path / "m.onnx", opset=9, input_size=(64, 64))
    with pytest.raises(ValueError, match=r"input_size must be an int >= 8 or a pair \(h, w\) of them, got \(4, 64\)"):
        export(model, tmp_path / "m.onnx", input_size=(4, 64))  # 8: the output stride
    with pytest.raises(TypeError, match="input_size must be an int >= 8"):
        export(model, tmp_path / "m.onnx", input_size="64x64")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(model, tmp_path / "missing" / "m.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        export(model, tmp_path / "dir.onnx")
    with pytest.raises(ValueError, match=r"does not end with '\.onnx'.*use e\.g\. m\.onnx"):
        export(model, tmp_path / "m.bin")
    with pytest.raises(ValueError, match=r"format='tflite' is not a deployment format; choose one of"):
        export(model, tmp_path / "m.onnx", format="tflite")
    with pytest.raises(TypeError, match=r"deeplabv3p model.*create_model"):
        export(torch.nn.Conv2d(3, 3, 1), tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match=r"ONNX file .* does not exist"):
        OnnxSegmenter(tmp_path / "nothing.onnx")


def test_missing_onnx_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[onnx\]'"):
        export(export_model(), tmp_path / "m.onnx")


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "r18.onnx"
    assert main(["export", "deeplabv3plus_r18_d8", "--out", str(out), "--size", "64x64"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (onnx)" in text
    assert "onnx vs PyTorch fp32 at 64x64 (HxW)" in text and "onnx vs PyTorch fp32 at 39x37 (HxW)" in text
    graph = onnx.load(str(out))
    assert [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 19


def test_cli_export_bad_arguments_fail_before_any_work(tmp_path, capsys):
    assert main(["export", "deeplabv3plus_r18_d8", "--out", str(tmp_path / "m.xml")]) == 2
    assert "does not end with '.onnx'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    args = ["export", "deeplabv3plus_r18_d8", "--out", str(tmp_path / "m.onnx"), "--int8", "--calibration"]
    assert main([*args, str(tmp_path / "empty")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists(), "the empty calibration folder is refused before the fp32 export"


def test_cli_export_bad_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    weights = tmp_path / "narrow.safetensors"
    save_file({k: v.contiguous() for k, v in export_model().state_dict().items()}, str(weights))
    out = tmp_path / "cli.onnx"
    assert main(["export", "deeplabv3plus_r18_d8", "--checkpoint", str(weights), "--out", str(out)]) == 2
    assert "does not fit the model" in capsys.readouterr().err
    assert not out.exists()


def test_export_of_an_optimized_model(tmp_path):
    model = export_model()
    fast = model.optimize_for_inference()
    path = export(fast, tmp_path / "fast.onnx", input_size=(64, 64)).path
    segmenter = OnnxSegmenter(path)
    for size in [(64, 64), (72, 100)]:
        assert compare(model, segmenter, synthetic_inputs(3, size)).within(FP32)
    graph = onnx.load(str(path))
    assert not any(n.op_type == "Pad" for n in graph.graph.node), "pre-padding is a CPU eager detail, not exported"
