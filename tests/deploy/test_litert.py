"""LiteRT export through litert-torch and `LiteRTSegmenter`: the proof, labels equal to PyTorch through predict, the
metadata sidecar, the fixed size and the bad inputs. litert-torch is not in the dev extra (it pulls jax and pins
typing_extensions): these tests run where it is installed (``pip install 'deeplabv3p[litert]'``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from parity import build

from deeplabv3p.deploy import export, load
from deeplabv3p.deploy.litert_runtime import LiteRTSegmenter
from deeplabv3p.deploy.metadata import sidecar, to_json
from deeplabv3p.deploy.proof import FP32

litert_torch = pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def model():
    m = build("r18_v1b_d8_slide")
    m.pretrained_cfg = m.pretrained_cfg.replace(classes=("sky", "road", "car"))
    return m


def _conv_file(path, out_channels: int) -> None:
    """A one-convolution ``.tflite`` at 16x16: a stand-in for a file the loader must check."""
    torch.manual_seed(0)
    litert_torch.convert(torch.nn.Conv2d(3, out_channels, 1).eval(), (torch.randn(1, 3, 16, 16),)).export(str(path))


@pytest.mark.slow
def test_export_is_proven_and_predicts_as_pytorch(model, tmp_path):
    report = export(model, tmp_path / "model.tflite", "litert", input_size=(64, 64), dynamic=False)
    assert [a.size for a in report.agreements] == [(64, 64)] and report.agreements[0].within(FP32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite", "model.tflite.json"]
    segmenter = load(report.path, threads=2)
    assert isinstance(segmenter, LiteRTSegmenter) and segmenter.static_size == (64, 64)
    assert segmenter.config == model.config and segmenter.pretrained_cfg == model.pretrained_cfg  # metadata
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
    assert (segmenter(x) - expected).abs().max() <= FP32.rtol * expected.abs().max()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(90 + 9 * i, 120, 3), dtype=np.uint8) for i in range(2)]
    slide = {"mode": "slide", "crop_size": 64, "stride": 48}
    for a, b in zip(model.predict(images, **slide), segmenter.predict(images, **slide)):
        assert b.classes == ("sky", "road", "car")
        np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(ValueError, match=r"exported for 64x64 \(HxW\) inputs only and was given 90x120"):
        segmenter.predict(images[0])


def test_loader_checks(model, tmp_path):
    path = tmp_path / "conv.tflite"
    _conv_file(path, 3)
    with pytest.raises(ValueError, match="no deeplabv3p metadata"):
        LiteRTSegmenter(path)
    sidecar(path).write_text(to_json(model))
    segmenter = LiteRTSegmenter(path, threads=1)
    assert segmenter.static_size == (16, 16)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 1).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        np.testing.assert_allclose(segmenter(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"exported for 16x16 \(HxW\) inputs only and was given 16x24"):
        segmenter(torch.randn(1, 3, 16, 24))
    four = tmp_path / "four.tflite"
    _conv_file(four, 4)
    sidecar(four).write_text(to_json(model))
    with pytest.raises(ValueError, match="output of 4 channels but its config says num_classes=3"):
        load(four)
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer" * 8)
    sidecar(tmp_path / "junk.tflite").write_text(to_json(model))
    with pytest.raises(ValueError, match=r"LiteRT cannot load .*junk\.tflite"):
        load(tmp_path / "junk.tflite")


def test_bad_exports_are_refused_before_any_work(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"the litert format exports fixed sizes only .*--static"):
        export(model, tmp_path / "m.tflite", "litert", input_size=(64, 64))
    with pytest.raises(ValueError, match=r"does not end with '\.tflite'"):
        export(model, tmp_path / "m.lite", "litert", dynamic=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[litert\]'"):
        export(model, tmp_path / "m.tflite", "litert", dynamic=False)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[litert\]'"):
        load(tmp_path / "m.tflite")
