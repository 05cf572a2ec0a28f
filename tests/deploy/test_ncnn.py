"""The ncnn format: pnnx conversion proven at two sizes, `NcnnSegmenter` through the predict pipeline, fixed-size
files, and the clear errors (wrong ending, missing weights or metadata, another model's config, missing extra)."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

import deeplabv3p.deploy
from deeplabv3p.deploy import ExportCheckError, export
from deeplabv3p.deploy import ncnn_export as ncnn_export_module
from deeplabv3p.deploy.ncnn_param import declared_input
from deeplabv3p.deploy.ncnn_runtime import NcnnSegmenter
from deeplabv3p.deploy.proof import FP32, compare, synthetic_inputs

pytest.importorskip("ncnn")
pytest.importorskip("pnnx")

CLASSES = ("sky", "road", "car")


@pytest.fixture(scope="module")
def named(model):
    """The parity network with class names and a test scale of its own, to see them come back from the sidecar."""
    m = copy.deepcopy(model)
    m.pretrained_cfg = model.pretrained_cfg.replace(classes=CLASSES, test_scale=(80, 60))
    return m


@pytest.fixture(scope="module")
def dynamic(named, tmp_path_factory):
    """A dynamic export with its proof (the report)."""
    return export(named, tmp_path_factory.mktemp("ncnn") / "model.ncnn.param", "ncnn", input_size=(64, 64))


@pytest.fixture(scope="module")
def static(named, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ncnn_static")
    return export(named, folder / "fixed.ncnn.param", "ncnn", input_size=(64, 48), dynamic=False, check=False).path


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(50 + 7 * i, 70 - 3 * i, 3), dtype=np.uint8) for i in range(n)]


def test_dynamic_export_is_proven_at_two_sizes_and_keeps_only_what_ncnn_runs(dynamic):
    folder = dynamic.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.ncnn.bin", "model.ncnn.param", "model.ncnn.param.json"]
    assert [a.size for a in dynamic.agreements] == [(64, 64), (64 // 2 + 7, 64 // 2 + 5)]
    for a in dynamic.agreements:
        assert a.within(FP32), a.describe("ncnn")
    assert declared_input(dynamic.path) == (-1, 3, -1, -1)
    assert not [name for name in sys.modules if name.endswith("model_pnnx")], "pnnx's generated module is dropped"
    assert "ncnn vs PyTorch fp32 at 39x37 (HxW)" in "\n".join(dynamic.lines())


@pytest.mark.parametrize("kwargs", [{}, {"mode": "slide", "crop_size": 32, "stride": 24}])
def test_ncnn_predictions_match_pytorch(named, dynamic, kwargs):
    segmenter = deeplabv3p.deploy.load(dynamic.path, threads=1)
    assert isinstance(segmenter, NcnnSegmenter) and segmenter.static_size is None
    assert segmenter.config == named.config  # the metadata round trip, through the sidecar
    assert segmenter.pretrained_cfg == named.pretrained_cfg.replace(num_classes=3)
    images = _images(3)
    ours = named.predict(images, return_probs=True, **kwargs)
    theirs = segmenter.predict(images, return_probs=True, **kwargs)
    for a, b in zip(ours, theirs):
        assert b.classes == CLASSES and b.size == a.size
        assert np.abs(a.probs - b.probs).max() < 1e-4
        assert (a.labels == b.labels).mean() >= FP32.labels


def test_a_batch_at_an_odd_size_and_without_winograd(named, dynamic):
    x = torch.randn(2, 3, 56, 40, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = named(x)
    for winograd in (True, False):
        got = NcnnSegmenter(dynamic.path, winograd=winograd, threads=1)(x)
        assert got.shape == (2, 3, 56, 40)
        assert (got - expected).abs().max() <= FP32.rtol * expected.abs().max()
        assert torch.equal(got.argmax(1), expected.argmax(1))


def test_static_export_refuses_other_sizes(named, static):
    segmenter = NcnnSegmenter(static, threads=1)
    assert segmenter.static_size == (64, 48) and declared_input(static) == (-1, 3, 64, 48)
    assert compare(named, segmenter, synthetic_inputs(3, (64, 48))).within(FP32)
    with pytest.raises(ValueError, match=r"exported for 64x48 \(HxW\) inputs only and was given 64x64.*dynamic"):
        segmenter(torch.randn(1, 3, 64, 64))
    image = np.random.default_rng(2).integers(0, 256, size=(96, 80, 3), dtype=np.uint8)
    slide = {"mode": "slide", "crop_size": (64, 48), "stride": (32, 32), "resize": False}
    ours, theirs = named.predict(image, **slide).labels, segmenter.predict(image, **slide).labels
    assert theirs.shape == (96, 80) and (ours == theirs).mean() >= FP32.labels


def test_files_of_another_model_or_half_an_export_are_refused(named, dynamic, tmp_path):
    with pytest.raises(ValueError, match="output of 3 channels but its config says num_classes=5"):
        NcnnSegmenter(
            dynamic.path,
            config=named.config.replace(num_classes=5),
            pretrained_cfg=named.pretrained_cfg.replace(num_classes=5, classes=()),
        ).predict(_images(1)[0])
    with pytest.raises(ValueError, match="input of 3 channels but its config says in_chans=4"):
        NcnnSegmenter(dynamic.path, config=named.config.replace(in_chans=4))
    bare = tmp_path / "bare.ncnn.param"
    bare.write_bytes(dynamic.path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"ncnn weights file .*bare\.ncnn\.bin' does not exist"):
        NcnnSegmenter(bare)
    (tmp_path / "bare.ncnn.bin").write_bytes(dynamic.path.with_name("model.ncnn.bin").read_bytes())
    with pytest.raises(ValueError, match="no deeplabv3p metadata"):
        NcnnSegmenter(bare)  # no sidecar
    given = NcnnSegmenter(bare, config=named.config, pretrained_cfg=named.pretrained_cfg)
    image = _images(1)[0]
    assert (given.predict(image).labels == named.predict(image).labels).mean() >= FP32.labels
    (tmp_path / "bare.ncnn.bin").write_bytes(b"\0" * 64)  # weights of another (much smaller) graph
    with pytest.raises(ValueError, match="ncnn cannot load"):
        NcnnSegmenter(bare, config=named.config)
    (tmp_path / "text.ncnn.param").write_text("not a graph\n")
    (tmp_path / "text.ncnn.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not a text ncnn param file"):
        NcnnSegmenter(tmp_path / "text.ncnn.param", config=named.config)


def test_wrong_endings_are_refused_before_any_work(named, dynamic, tmp_path):
    with pytest.raises(ValueError, match=r"does not end with '\.ncnn\.param'.*m\.ncnn\.param"):
        export(named, tmp_path / "m.param", "ncnn")
    with pytest.raises(ValueError, match="cannot tell the deployment format"):
        deeplabv3p.deploy.load(dynamic.path.with_name("model.ncnn.bin"))
    renamed = tmp_path / "model.param"
    renamed.write_bytes(dynamic.path.read_bytes())
    with pytest.raises(ValueError, match=r"does not end with '\.ncnn\.param'"):
        NcnnSegmenter(renamed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.param"]


@pytest.mark.parametrize("module", ["ncnn", "pnnx"])
def test_missing_extra_is_a_clear_error(named, dynamic, tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"needs the '{module}' package: pip install 'deeplabv3p\[ncnn\]'"):
        export(named, tmp_path / "m.ncnn.param", "ncnn", input_size=(64, 64))
    assert list(tmp_path.iterdir()) == []
    if module == "ncnn":
        with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[ncnn\]'"):
            deeplabv3p.deploy.load(dynamic.path)


def test_a_failed_conversion_names_pnnx_and_publishes_nothing(named, tmp_path, monkeypatch):
    import pnnx

    def silent_failure(*args, **kwargs):  # what pnnx.export does when its converter process dies
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('unsupported operator aten::frobnicate')"])
        raise FileNotFoundError(2, "No such file or directory", "model_pnnx.py")

    monkeypatch.setattr(pnnx, "export", silent_failure)
    target = tmp_path / "m.ncnn.param"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match=r"pnnx could not convert(.|\n)*aten::frobnicate"):
        export(named, target, "ncnn", input_size=(64, 64))
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ncnn.param"]


@pytest.mark.slow
def test_an_export_that_disagrees_is_never_published(named, tmp_path, monkeypatch):
    real = ncnn_export_module.traceable_copy

    def shifted(model):
        copy = real(model)
        with torch.no_grad():
            copy.classifier.conv.bias.add_(1.0 + torch.arange(3.0))
        return copy

    monkeypatch.setattr(ncnn_export_module, "traceable_copy", shifted)
    with pytest.raises(ExportCheckError, match="does not segment as the PyTorch model does"):
        export(named, tmp_path / "m.ncnn.param", "ncnn", input_size=(64, 64), dynamic=False)
    assert list(tmp_path.iterdir()) == []
