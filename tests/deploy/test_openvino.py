"""The ``openvino`` format: export through ONNX and ``openvino.convert_model``, proven against PyTorch; the
`OpenVinoSegmenter` behind the predict pipeline in explicit f32; NNCF INT8 with accuracy control; the bad inputs."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
from nets import narrow_model, randomize_bn

import deeplabv3p
from deeplabv3p.cli import main
from deeplabv3p.deploy import OpenVinoSegmenter, export, load
from deeplabv3p.deploy import openvino_runtime as runtime_module
from deeplabv3p.deploy.calibration import calibration_inputs, label_agreement
from deeplabv3p.deploy.metadata import KEY, to_json
from deeplabv3p.deploy.proof import FP32

ov = pytest.importorskip("openvino")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model() -> deeplabv3p.DeepLabV3Plus:
    m = randomize_bn(narrow_model(num_classes=5, deep_stem=True).eval())
    m.pretrained_cfg = m.pretrained_cfg.replace(classes=("a", "b", "c", "d", "e"), test_scale=(80, 60))
    return m


@pytest.fixture(scope="module")
def report(model, tmp_path_factory):
    return export(model, tmp_path_factory.mktemp("ov") / "model.xml", format="openvino", input_size=(64, 64))


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(50 + 7 * i, 70 - 3 * i, 3), dtype=np.uint8) for i in range(n)]


def test_export_is_proven_and_published_with_its_weights(report):
    assert report.format == "openvino"
    assert sorted(p.name for p in report.path.parent.iterdir()) == ["model.bin", "model.xml"], "no temporary left"
    assert [a.size for a in report.agreements] == [(64, 64), (39, 37)]  # dynamic: proven at a second size
    for a in report.agreements:
        assert a.within(FP32) and a.rel_diff < 1e-5, "f32 inference: far inside the bound, unlike bf16 (~1e-2)"
    ir = ov.Core().read_model(str(report.path))
    assert [str(d) for d in ir.inputs[0].get_partial_shape()] == ["?", "3", "?", "?"]
    assert [str(d) for d in ir.outputs[0].get_partial_shape()] == ["?", "5", "?", "?"]
    weights = [op for op in ir.get_ops() if op.get_type_name() == "Constant" and len(op.get_output_shape(0)) == 4]
    assert len(weights) >= 10 and all(w.get_element_type() == ov.Type.f32 for w in weights), "no fp16 compression"


def test_metadata_round_trip_and_predictions_match_pytorch(model, report):
    segmenter = load(report.path, threads=1)
    assert isinstance(segmenter, OpenVinoSegmenter)
    assert segmenter.config == model.config
    assert segmenter.pretrained_cfg == model.pretrained_cfg.replace(num_classes=5)
    assert segmenter.static_size is None
    images = _images(2)
    for kwargs in ({}, {"mode": "slide", "crop_size": 32, "stride": 24}):
        ours = model.predict(images, return_probs=True, **kwargs)
        theirs = segmenter.predict(images, return_probs=True, **kwargs)
        for a, b in zip(ours, theirs):
            assert b.classes == ("a", "b", "c", "d", "e") and b.size == a.size
            assert np.abs(a.probs - b.probs).max() < 1e-4
            np.testing.assert_array_equal(a.labels, b.labels)
    x = torch.randn(2, 3, 48, 72)  # batch and size are free
    with torch.inference_mode():
        expected = model(x)
    got = segmenter(x)
    assert got.shape == (2, 5, 48, 72)
    assert (got - expected).abs().max() <= FP32.rtol * expected.abs().max()


def test_precision_is_explicit_f32(report, monkeypatch):
    segmenter = OpenVinoSegmenter(report.path, threads=1)
    assert segmenter.precision == "f32" and segmenter.identity().endswith("precision=f32")  # resumes tell them apart
    assert segmenter.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert segmenter.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(segmenter.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    # The check is live: a plugin that compiled bf16 anyway (its default on AMX / AVX512-BF16 CPUs) is refused.
    monkeypatch.setattr(runtime_module, "inference_precision", lambda compiled: "bf16")
    with pytest.raises(RuntimeError, match=r"compiled .* for bf16 although f32 was asked for"):
        OpenVinoSegmenter(report.path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"precision must be one of \['f32', 'bf16'\], got 'fp16'"):
        OpenVinoSegmenter(report.path, precision="fp16")


def test_static_export_refuses_another_size(model, tmp_path):
    report = export(model, tmp_path / "static.xml", format="openvino", input_size=(64, 64), dynamic=False)
    assert [a.size for a in report.agreements] == [(64, 64)] and report.agreements[0].within(FP32)
    segmenter = OpenVinoSegmenter(report.path)
    assert segmenter.static_size == (64, 64)
    with pytest.raises(ValueError, match=r"exported for 64x64 \(HxW\) inputs only and was given 64x96.*dynamic"):
        segmenter(torch.randn(1, 3, 64, 96))
    x = torch.randn(3, 3, 64, 64)  # the batch of a static export is fixed too: run one image at a time
    with torch.inference_mode():
        expected = model(x)
    assert (segmenter(x) - expected).abs().max() <= FP32.rtol * expected.abs().max()


def _foreign_model(classes: int, metadata: str | None):
    """A one-layer OpenVINO model (image in, `classes` planes out), with deeplabv3p metadata when given."""
    from openvino import opset13 as ops

    image = ops.parameter([-1, 3, -1, -1], np.float32, name="input")
    weights = ops.constant(np.ones((classes, 3, 1, 1), np.float32))
    conv = ops.convolution(image, weights, [1, 1], [0, 0], [0, 0], [1, 1])
    foreign = ov.Model([conv], [image], "foreign")
    if metadata is not None:
        foreign.set_rt_info(metadata, [KEY])
    return foreign


def test_files_of_other_models_are_refused_clearly(model, report, tmp_path):
    ov.save_model(_foreign_model(3, to_json(model)), str(tmp_path / "other.xml"), compress_to_fp16=False)
    with pytest.raises(ValueError, match=r"output of 3 channels but its config says num_classes=5"):
        OpenVinoSegmenter(tmp_path / "other.xml")
    ov.save_model(_foreign_model(5, None), str(tmp_path / "bare.xml"), compress_to_fp16=False)
    with pytest.raises(ValueError, match="no deeplabv3p metadata"):
        OpenVinoSegmenter(tmp_path / "bare.xml")
    given = OpenVinoSegmenter(tmp_path / "bare.xml", config=model.config, pretrained_cfg=model.pretrained_cfg)
    assert given.predict(_images(1)[0]).labels.shape == (50, 70)
    (tmp_path / "lonely.xml").write_bytes(report.path.read_bytes())  # no .bin beside it
    with pytest.raises(ValueError, match=r"OpenVINO cannot read .*lonely\.xml.*with its \.bin beside it"):
        OpenVinoSegmenter(tmp_path / "lonely.xml")
    (tmp_path / "text.xml").write_text("not a model")
    with pytest.raises(ValueError, match="OpenVINO cannot read"):
        load(tmp_path / "text.xml")
    with pytest.raises(FileNotFoundError, match=r"OpenVINO file .*missing\.xml' does not exist"):
        OpenVinoSegmenter(tmp_path / "missing.xml")
    with pytest.raises(ValueError, match=r"does not end with '\.xml'.*use e\.g\. m\.xml"):
        export(model, tmp_path / "m.onnx", format="openvino")
    with pytest.raises(ValueError, match="applies to the PyTorch backend"):
        load(report.path).predict(_images(1)[0], dtype=torch.bfloat16)


def test_missing_openvino_names_the_extra(model, report, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(
        ImportError, match=r"openvino export needs the 'openvino' package: pip install 'deeplabv3p\[openvino\]"
    ):
        export(model, tmp_path / "m.xml", format="openvino")
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[openvino\]'"):
        load(report.path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3p\[openvino\]'"):
        deeplabv3p.deploy.quantize_openvino(report.path, tmp_path / "m.int8.xml", [])


def test_int8_with_accuracy_control_keeps_the_labels(model, report, tmp_path):
    from deeplabv3p.deploy.openvino_int8 import torch_reference

    inputs = list(calibration_inputs(model, _images(4, seed=1), limit=4))
    held_out = list(calibration_inputs(model, _images(2, seed=2), limit=2))
    path = deeplabv3p.deploy.quantize_openvino(
        report.path, tmp_path / "model.int8.xml", inputs, held_out=held_out, reference=torch_reference(model)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.bin", "model.int8.xml"]
    ir = ov.Core().read_model(str(path))
    assert sum(op.get_type_name() == "FakeQuantize" for op in ir.get_ops()) >= 10  # every conv's input
    int8 = load(path)
    assert int8.precision == "f32"  # the layers left in full precision run in f32
    assert int8.pretrained_cfg.classes == ("a", "b", "c", "d", "e")  # the metadata survived quantization
    assert label_agreement(model, int8, _images(3, seed=3)) >= 0.995
    x = torch.from_numpy(held_out[0])
    with torch.inference_mode():
        expected = model(x)
    assert (int8(x) - expected).abs().max() > 1e-4 * expected.abs().max(), "int8, not the fp32 file by mistake"
    with pytest.raises(ValueError, match="calibration gave no inputs"):
        deeplabv3p.deploy.quantize_openvino(report.path, tmp_path / "empty.int8.xml", [])
    with pytest.raises(ValueError, match=r"must end with '\.xml'"):
        deeplabv3p.deploy.quantize_openvino(report.path, tmp_path / "m.onnx", inputs)
    with pytest.raises(ValueError, match=r"max_drop must be a finite number in \[0, 1\], got 2"):
        deeplabv3p.deploy.quantize_openvino(report.path, tmp_path / "m.int8.xml", inputs, max_drop=2)


def test_accuracy_control_metric_is_label_agreement():
    from deeplabv3p.deploy.openvino_int8 import label_agreement_metric

    reference = np.array([[[0, 1], [1, 1]]])  # (1, H, W) labels
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 1] = [[1, 1], [1, -1]]  # labels [[1, 1], [1, 0]]: 2 of 4 agree
    items = [(np.zeros((1, 3, 2, 2), np.float32), reference), (np.ones((1, 3, 2, 2), np.float32), reference)]

    def compiled(x):
        return [logits if x.sum() == 0 else np.stack([logits[:, 1], logits[:, 0]], 1)]  # second: 2 of 4 too, others

    overall, each = label_agreement_metric(compiled, items)
    assert each == [0.5, 0.5] and overall == 0.5
    perfect = np.zeros((1, 2, 2, 2), np.float32)
    perfect[0, 1] = reference[0] * 2 - 1
    assert label_agreement_metric(lambda x: [perfect], items[:1]) == (1.0, [1.0])


def test_cli_int8_flags_are_checked_before_any_work(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(_images(2)):
        from PIL import Image

        Image.fromarray(image).save(images / f"im{i}.png")
    base = ["export", "deeplabv3plus_r18_d8", "--size", "64x64"]
    for args, message in (
        (["--out", str(tmp_path / "m.onnx"), "--int8", "--calibration", str(images), "--max-drop", "0.01"],
         r"--max-drop applies to --int8 with --format openvino \(given: --format onnx\)"),
        (["--format", "openvino", "--out", str(tmp_path / "m.xml"), "--max-drop", "0.01"],
         r"--max-drop applies to --int8 with --format openvino \(given: --format openvino without --int8\)"),
        (["--format", "openvino", "--out", str(tmp_path / "m.xml"), "--int8", "--calibration", str(images),
          "--calibration-method", "entropy"], "--calibration-method applies to --int8 with --format onnx"),
        (["--format", "openvino", "--out", str(tmp_path / "m.xml"), "--int8", "--calibration", str(images),
          "--max-drop", "0.01"], "--max-drop needs held-out images: --calibration .* has 2 image"),
        (["--format", "openvino", "--out", str(tmp_path / "m.xml"), "--int8", "--calibration", str(images),
          "--calibration-images", "1", "--max-drop", "1.5"], r"--max-drop must be a finite number in \[0, 1\)"),
    ):  # fmt: skip
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"], "nothing exported"


@pytest.mark.slow
def test_cli_export_openvino_int8_with_accuracy_control(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i, image in enumerate(_images(4, seed=5)):
        Image.fromarray(image).save(images / f"im{i}.png")
    out = tmp_path / "m.xml"
    args = ["export", "deeplabv3plus_r18_d8", "--format", "openvino", "--out", str(out), "--size", "64x64"]
    assert main([*args, "--int8", "--calibration", str(images), "--calibration-images", "2", "--max-drop", "0.01"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (openvino)" in text and "openvino vs PyTorch fp32 at 39x37 (HxW)" in text
    assert "(INT8, calibrated on 2 image(s), NNCF with accuracy control on 2 held-out image(s), max drop 1%)" in text
    assert "INT8 labels vs PyTorch fp32 on 2 held-out image(s)" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "m.bin", "m.int8.bin", "m.int8.xml", "m.xml"]
