"""ExecuTorch (XNNPACK) export and `ExecuTorchSegmenter`: the proof at two sizes, labels equal to PyTorch through
predict, the metadata sidecar, the size bounds and the bad inputs (another model's file, a foreign file, a missing
extra, a wrong ending). Lowering a DeepLabV3+ takes a minute on two cores, so the tests that export one are slow;
the loader's checks run on one-convolution programs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from nets import narrow_model, randomize_bn
from parity import build

import deeplabv3p
from deeplabv3p.deploy import export, load
from deeplabv3p.deploy.executorch_runtime import ExecuTorchSegmenter
from deeplabv3p.deploy.metadata import sidecar, to_json
from deeplabv3p.deploy.proof import FP32, compare, synthetic_inputs

pytest.importorskip("executorch")


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(50 + 7 * i, 70 - 9 * i, 3), dtype=np.uint8) for i in range(n)]


def _conv_program(path, out_channels: int, size: tuple[int, int] = (16, 16)) -> None:
    """A one-convolution ExecuTorch program at a fixed size: a stand-in for a file the loader must check."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, out_channels, 1).eval()
    program = torch.export.export(conv, (torch.randn(1, 3, *size),))
    path.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    """A one-convolution program of 3 output planes, lowered once for the module."""
    folder = tmp_path_factory.mktemp("conv")
    _conv_program(folder / "conv3.pte", out_channels=3)
    return folder


@pytest.fixture(scope="module")
def model() -> deeplabv3p.DeepLabV3Plus:
    m = build("r18_v1b_d8_slide")
    m.pretrained_cfg = m.pretrained_cfg.replace(classes=("sky", "road", "car"))
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The model exported with free sizes up to 96x96, proven at 64x64 and 39x37."""
    return export(model, tmp_path_factory.mktemp("et") / "model.pte", "executorch", input_size=(64, 64),
                  max_size=(96, 96))  # fmt: skip


@pytest.mark.slow
def test_export_is_proven_and_predicts_as_pytorch(model, exported):
    assert [a.size for a in exported.agreements] == [(64, 64), (39, 37)]
    assert all(a.within(FP32) for a in exported.agreements)
    folder = exported.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.pte", "model.pte.json"]
    segmenter = load(exported.path, threads=2)
    assert isinstance(segmenter, ExecuTorchSegmenter)
    assert segmenter.config == model.config and segmenter.pretrained_cfg == model.pretrained_cfg  # metadata
    assert (segmenter.min_size, segmenter.max_size, segmenter.static_size) == ((9, 9), (96, 96), None)
    x = torch.randn(2, 3, 72, 90)  # a batch, at a size neither proof used
    with torch.inference_mode():
        expected = model(x)
    got = segmenter(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= FP32.rtol * expected.abs().max()
    images = _images(3)
    for kwargs in ({}, {"mode": "slide", "crop_size": 48, "stride": 32}):
        ours = model.predict(images, **kwargs)
        theirs = segmenter.predict(images, **kwargs)
        for a, b in zip(ours, theirs):
            assert b.classes == ("sky", "road", "car")
            np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(ValueError, match=r"takes inputs from 9x9 to 96x96 \(HxW\) and was given 97x64.*max_size"):
        segmenter(torch.randn(1, 3, 97, 64))


@pytest.mark.slow
def test_static_export_of_a_deep_stem_network(tmp_path):
    model = randomize_bn(narrow_model(num_classes=5, deep_stem=True).eval())
    report = export(model, tmp_path / "static.pte", "executorch", input_size=(48, 64), dynamic=False)
    assert [a.size for a in report.agreements] == [(48, 64)]
    segmenter = ExecuTorchSegmenter(report.path)
    assert segmenter.static_size == (48, 64)
    assert compare(model, segmenter, synthetic_inputs(3, (48, 64), seed=5)).within(FP32)
    with pytest.raises(ValueError, match=r"exported for 48x64 \(HxW\) inputs only and was given 64x48"):
        segmenter(torch.randn(1, 3, 64, 48))


def test_loader_checks_a_fixed_size_file(model, conv, tmp_path):
    path = tmp_path / "conv.pte"
    path.write_bytes((conv / "conv3.pte").read_bytes())
    with pytest.raises(ValueError, match="no deeplabv3p metadata"):
        ExecuTorchSegmenter(path)
    sidecar(path).write_text(to_json(model))
    segmenter = ExecuTorchSegmenter(path)
    assert segmenter.threads == 2  # torch's thread count (tests/conftest.py), which sized the process-wide pool
    with pytest.raises(ValueError, match=r"threads=1: ExecuTorch's thread pool .* sized to 2 threads"):
        ExecuTorchSegmenter(path, threads=1)
    assert segmenter.static_size == (16, 16) and segmenter.pretrained_cfg.classes == ("sky", "road", "car")
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 1).eval()
    with torch.inference_mode():
        np.testing.assert_allclose(segmenter(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"exported for 16x16 \(HxW\) inputs only and was given 16x24.*dynamic"):
        segmenter(torch.randn(1, 3, 16, 24))


def test_a_file_of_another_model_is_refused(model, conv, tmp_path):
    path = tmp_path / "other.pte"
    path.write_bytes((conv / "conv3.pte").read_bytes())
    sidecar(path).write_text(to_json(narrow_model(num_classes=5)))  # a 5-class model's settings, 3 output planes
    with pytest.raises(ValueError, match="output of 3 channels but its config says num_classes=5"):
        load(path)
    (tmp_path / "junk.pte").write_bytes(b"not a program" * 10)
    sidecar(tmp_path / "junk.pte").write_text(to_json(model))
    with pytest.raises(ValueError, match=r"ExecuTorch cannot load .*junk\.pte"):
        load(tmp_path / "junk.pte")
    with pytest.raises(FileNotFoundError, match=r"ExecuTorch program .*missing\.pte.* does not exist"):
        load(tmp_path / "missing.pte")


def test_bad_export_arguments(model, tmp_path):
    with pytest.raises(ValueError, match=r"does not end with '\.pte'.*use e\.g\. m\.pte"):
        export(model, tmp_path / "m.onnx", "executorch")
    with pytest.raises(ValueError, match=r"max_size=\(32, 32\) is smaller than input_size=\(64, 64\)"):
        export(model, tmp_path / "m.pte", "executorch", input_size=(64, 64), max_size=32)
    assert list(tmp_path.iterdir()) == []


def test_size_errors_read_as_the_export_command_spells_them():
    from deeplabv3p.cli import build_parser
    from deeplabv3p.deploy.torch_program import check_max_size
    from deeplabv3p.spelling import arg, command_flags, command_line

    with command_line(command_flags(build_parser("export"), "export")), pytest.raises(ValueError) as e:
        check_max_size((32, 48), (64, 64), 8)
    assert str(e.value).startswith("--max-size 32x48 is smaller than --size 64x64: the example input must fit")
    with command_line(command_flags(build_parser("train"), "train")):  # each flag as it parses its values
        assert (arg("test_scale", (64, 96)), arg("bands", (4, 3, 2))) == ("--test-scale 64 96", "--bands 4,3,2")


def test_missing_executorch_is_a_clear_error(model, conv, tmp_path, monkeypatch):
    path = tmp_path / "conv.pte"
    path.write_bytes((conv / "conv3.pte").read_bytes())
    monkeypatch.setitem(sys.modules, "executorch", None)
    with pytest.raises(ImportError, match=r"executorch export needs the 'executorch' package: pip install "
                                          r"'deeplabv3p\[executorch\]'"):  # fmt: skip
        export(model, tmp_path / "m.pte", "executorch")
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[executorch\]'"):
        load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.pte"]


def test_cli_max_size_reaches_the_writer_and_is_refused_where_it_does_not_apply(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from deeplabv3p.cli import main
    from deeplabv3p.deploy import exporter

    calls = []
    monkeypatch.setattr(exporter, "export", lambda *a, **k: calls.append(k) or SimpleNamespace(lines=lambda: []))
    base = ["export", "deeplabv3plus_r18_d8", "--size", "64x64", "--max-size", "96x128"]
    assert main([*base, "--format", "executorch", "--out", str(tmp_path / "m.pte")]) == 0
    assert calls[0]["max_size"] == (96, 128) and calls[0]["input_size"] == (64, 64) and calls[0]["dynamic"]
    for refused, words in (
        (["--format", "onnx", "--out", str(tmp_path / "m.onnx")], "(given: --format onnx)"),
        (
            ["--format", "executorch", "--static", "--out", str(tmp_path / "m.pte")],
            "(given: --format executorch with --static)",
        ),
    ):
        assert main([*base, *refused]) == 2
        assert f"--max-size applies to dynamic exports of --format executorch or tensorrt {words}" in (
            capsys.readouterr().err
        )
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []


def test_max_size_formats_are_those_whose_writers_take_it():
    import inspect

    from deeplabv3p.deploy.formats import FORMATS

    for fmt in FORMATS.values():
        takes = "max_size" in inspect.signature(fmt.write_function()).parameters
        assert fmt.max_size == takes, fmt.name
