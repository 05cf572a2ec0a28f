"""ONNX export: dynamic shapes, agreement with eager PyTorch under onnxruntime, atomic writes, the CLI command."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from nets import narrow_model, randomize_bn

import deeplabv3p
from deeplabv3p.cli import main
from deeplabv3p.inference.export import DEFAULT_OPSET, ONNX_RTOL, check_onnx, export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def export_model(**overrides) -> deeplabv3p.DeepLabV3Plus:
    """A small mmseg R-18-D8 (deep stem, output stride 8) with non-trivial BatchNorm statistics, in eval mode."""
    return randomize_bn(narrow_model(num_classes=5, deep_stem=True, **overrides).eval())


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def test_dynamic_export_matches_eager_at_two_sizes(tmp_path):
    model = export_model()
    path = export_onnx(model, tmp_path / "model.onnx", input_size=(64, 96))
    assert path == tmp_path / "model.onnx" and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "no temporary file is left behind"
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == DEFAULT_OPSET
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert not any(n.op_type == "BatchNormalization" for n in graph.graph.node), "the exporter folds BatchNorm"
    checks = check_onnx(path, model, sizes=[(64, 96), (83, 131)])
    assert [c.size for c in checks] == [(64, 96), (83, 131)]
    for c in checks:
        assert c.rel_diff <= ONNX_RTOL
        assert c.argmax_agreement >= 0.999
    # Batch is dynamic too.
    x = torch.randn(3, 3, 72, 40)
    with torch.inference_mode():
        expected = model(x)
    got = run_onnx(path, x)
    assert got.shape == (3, 5, 72, 40)
    assert np.abs(got - expected.numpy()).max() <= ONNX_RTOL * expected.abs().max().item()


def test_static_export(tmp_path):
    model = export_model()
    path = export_onnx(model, tmp_path / "static.onnx", dynamic=False, input_size=(64, 64), opset=13)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 13
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    (check,) = check_onnx(path, model, sizes=[(64, 64)])
    assert check.rel_diff <= ONNX_RTOL
    with pytest.raises(Exception, match=r"(?i)dimension|shape|index"):
        run_onnx(path, torch.randn(1, 3, 64, 96))


def test_align_corners_and_odd_channels(tmp_path):
    model = export_model(align_corners=True, in_chans=4)
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(48, 64))
    for c in check_onnx(path, model, sizes=[(48, 64), (57, 90)]):
        assert c.rel_diff <= ONNX_RTOL


def test_check_reports_disagreement(tmp_path):
    model = export_model()
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64))
    other = export_model()
    with torch.no_grad():
        other.classifier.conv.bias.add_(1.0 + torch.arange(5.0))
    with pytest.raises(ValueError, match="disagrees with eager PyTorch"):
        check_onnx(path, other, sizes=[(64, 64)])
    (c,) = check_onnx(path, other, sizes=[(64, 64)], rtol=None)
    assert c.rel_diff > ONNX_RTOL


def test_failed_export_leaves_existing_file_alone(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")

    def broken(*args, **kwargs):
        with open(args[2], "wb") as f:
            f.write(b"half")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(export_model(), target, input_size=(64, 64))
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_bad_arguments(tmp_path):
    model = export_model()
    with pytest.raises(ValueError, match="opset must be an int >= 11"):
        export_onnx(model, tmp_path / "m.onnx", opset=9)
    with pytest.raises(ValueError, match=r"input_size must be an int >= 8 or a pair \(h, w\) of them, got \(4, 64\)"):
        export_onnx(model, tmp_path / "m.onnx", input_size=(4, 64))  # 8: the output stride
    with pytest.raises(TypeError, match="input_size must be an int >= 8"):
        export_onnx(model, tmp_path / "m.onnx", input_size="64x64")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="is a folder"):
        export_onnx(model, tmp_path)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        export_onnx("model", tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError):
        check_onnx(tmp_path / "nothing.onnx", model)


def test_missing_onnx_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[onnx\]'"):
        export_onnx(export_model(), tmp_path / "m.onnx")


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "r18.onnx"
    assert main(["export", "deeplabv3plus_r18_d8", "--out", str(out), "--size", "64x64"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (opset {DEFAULT_OPSET}, dynamic shape)" in text
    assert "onnxruntime vs PyTorch at 64x64" in text and "onnxruntime vs PyTorch at 39x37" in text
    graph = onnx.load(str(out))
    assert [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 19


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
    path = export_onnx(fast, tmp_path / "fast.onnx", input_size=(64, 64))
    for c in check_onnx(path, model, sizes=[(64, 64), (72, 100)]):
        assert c.rel_diff <= ONNX_RTOL
    graph = onnx.load(str(path))
    assert not any(n.op_type == "Pad" for n in graph.graph.node), "pre-padding is a CPU eager detail, not exported"
