"""The tensorrt format: on any machine, the clear errors (no tensorrt package, no CUDA GPU, wrong ending, CPU
options); on a CUDA machine with TensorRT (``pytest -m gpu``), engines built from ONNX, proven and run by
`TensorRTSegmenter` through the predict pipeline."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch
from nets import narrow_model, randomize_bn

import deeplabv3p.deploy
from deeplabv3p.cli import main
from deeplabv3p.deploy import export
from deeplabv3p.deploy.formats import format_of
from deeplabv3p.deploy.proof import FP32, INT8, compare, synthetic_inputs
from deeplabv3p.deploy.tensorrt_runtime import TensorRTSegmenter
from deeplabv3p.inference.options import PredictOptions


def export_model() -> deeplabv3p.DeepLabV3Plus:
    return randomize_bn(narrow_model(num_classes=5, deep_stem=True).eval())


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine with the tensorrt package (a stand-in module) and no CUDA GPU."""
    fake = types.ModuleType("tensorrt")
    fake.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # torch._dynamo looks modules up by spec
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_the_format_is_told_by_its_ending_and_cannot_run_on_the_cpu():
    fmt = format_of("model.engine")
    assert (fmt.name, fmt.extra, fmt.runs_on_cpu) == ("tensorrt", "tensorrt", False)


def test_missing_tensorrt_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match=r"needs the 'tensorrt' package: pip install 'deeplabv3p\[tensorrt\]'"):
        export(export_model(), tmp_path / "m.engine", "tensorrt", input_size=(64, 64))
    engine = tmp_path / "other.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[tensorrt\]'"):
        deeplabv3p.deploy.load(engine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.engine"]


def test_no_cuda_is_a_clear_error_before_any_work(tmp_path, no_cuda):
    with pytest.raises(RuntimeError, match=r"TensorRT export needs an NVIDIA GPU with CUDA.*--format onnx or ncnn"):
        export(export_model(), tmp_path / "m.engine", "tensorrt", input_size=(64, 64), check=False)
    assert list(tmp_path.iterdir()) == []
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(RuntimeError, match="running a TensorRT engine needs an NVIDIA GPU"):
        deeplabv3p.deploy.load(engine)


def test_wrong_ending_and_cpu_options_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"does not end with '\.engine'.*m\.engine"):
        export(export_model(), tmp_path / "m.trt", "tensorrt")
    assert main(["export", "deeplabv3plus_r18_d8", "--out", str(tmp_path / "m.onnx"), "--fp16"]) == 2
    assert "--fp16 applies to --format tensorrt, not onnx" in capsys.readouterr().err
    segmenter = TensorRTSegmenter.__new__(TensorRTSegmenter)  # configure() needs no engine
    segmenter.device = torch.device("cuda", 0)
    with pytest.raises(ValueError, match="a TensorRT engine runs on a CUDA GPU"):
        segmenter.configure(PredictOptions(device="cpu"))
    with pytest.raises(ValueError, match="applies to the PyTorch backend"):
        segmenter.configure(PredictOptions(dtype=torch.bfloat16))
    assert list(tmp_path.iterdir()) == []


# --- on a CUDA machine with TensorRT -------------------------------------------------------------------------------


def _tensorrt():
    return pytest.importorskip("tensorrt")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp32_engine_is_proven_and_predicts_as_pytorch(tmp_path):
    _tensorrt()
    model = export_model()
    model.pretrained_cfg = model.pretrained_cfg.replace(classes=tuple("abcde"))
    report = export(model, tmp_path / "m.engine", "tensorrt", input_size=(64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]
    text = "\n".join(report.lines())
    assert "tensorrt vs PyTorch fp32 at 64x64 (HxW)" in text and "at 39x37 (HxW)" in text
    segmenter = deeplabv3p.deploy.load(report.path)
    assert isinstance(segmenter, TensorRTSegmenter) and segmenter.static_size is None
    assert segmenter.device.type == "cuda" and segmenter.pretrained_cfg.classes == tuple("abcde")
    for size in [(64, 64), (72, 100)]:  # TF32 off: a full fp32 engine meets the fp32 bound
        assert compare(model, segmenter, synthetic_inputs(3, size)).within(FP32)
    x = torch.randn(3, 3, 48, 80)  # a batch within the profile's 4
    with torch.inference_mode():
        got, expected = segmenter(x), model(x)
    assert got.device.type == "cuda" and got.shape == (3, 5, 48, 80)
    assert (got.cpu() - expected).abs().max() <= FP32.rtol * expected.abs().max()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8) for _ in range(2)]
    for kwargs in ({}, {"mode": "slide", "crop_size": 32, "stride": 24}):
        ours = model.predict(images, **kwargs)
        theirs = segmenter.predict(images, **kwargs)
        for a, b in zip(ours, theirs):
            assert (a.labels == b.labels).mean() >= FP32.labels and b.classes == tuple("abcde")
    with pytest.raises(ValueError, match=r"takes inputs from \[1, 3, 8, 8\] to \[4, 3, 128, 128\]"):
        segmenter(torch.randn(1, 3, 64, 160))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_static_engine_keeps_the_labels_and_refuses_other_sizes(tmp_path):
    _tensorrt()
    model = export_model()
    report = export(model, tmp_path / "m.engine", "tensorrt", input_size=(64, 96), dynamic=False, fp16=True)
    assert "within the bound of reduced-precision engines" in "\n".join(report.lines())
    segmenter = TensorRTSegmenter(report.path)
    assert segmenter.static_size == (64, 96)
    assert compare(model, segmenter, synthetic_inputs(3, (64, 96), count=4)).label_agreement >= INT8.labels
    x = torch.randn(2, 3, 64, 96)  # a fixed-batch engine runs a batch one image at a time
    assert segmenter(x).shape == (2, 5, 64, 96)
    with pytest.raises(ValueError, match=r"exported for 64x96 \(HxW\) inputs only and was given 64x64"):
        segmenter(torch.randn(1, 3, 64, 64))
