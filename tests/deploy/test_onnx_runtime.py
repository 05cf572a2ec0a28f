"""OnnxSegmenter: an exported file through the same predict pipeline as PyTorch; INT8 static quantization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity import build

import deeplabv3p
from deeplabv3p.deploy.calibration import calibration_inputs, label_agreement
from deeplabv3p.deploy.onnx_int8 import logits_path, quantize_onnx
from deeplabv3p.deploy.onnx_runtime import OnnxSegmenter

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
CASE = "r18_v1b_d8_slide"


@pytest.fixture(scope="module")
def model():
    m = build(CASE)
    m.pretrained_cfg = m.pretrained_cfg.replace(classes=("sky", "road", "car"), test_scale=(80, 60))
    return m


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return deeplabv3p.deploy.export(
        model, tmp_path_factory.mktemp("onnx") / "model.onnx", input_size=(64, 64), check=False
    ).path


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(50 + 7 * i, 70 - 3 * i, 3), dtype=np.uint8) for i in range(n)]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"mode": "slide", "crop_size": 32, "stride": 24}, {"tta": True, "tta_ratios": (0.75, 1.25)}],
)
def test_onnx_predictions_match_pytorch(model, exported, kwargs):
    segmenter = OnnxSegmenter(exported, threads=1)
    assert segmenter.pretrained_cfg == model.pretrained_cfg.replace(num_classes=3)  # read from the file's metadata
    assert segmenter.config == model.config
    images = _images(3)
    ours = model.predict(images, return_probs=True, **kwargs)
    theirs = segmenter.predict(images, return_probs=True, **kwargs)
    for a, b in zip(ours, theirs):
        assert b.classes == ("sky", "road", "car") and b.size == a.size
        assert np.abs(a.probs - b.probs).max() < 1e-4
        assert (a.labels == b.labels).mean() >= 0.999
    stream = segmenter.predict_iter(images, batch_size=2, num_workers=1, **kwargs)
    for a, b in zip(ours, stream):
        np.testing.assert_array_equal(a.labels, b.labels)


def test_pytorch_only_options_and_foreign_files_are_refused(model, exported, tmp_path):
    segmenter = OnnxSegmenter(exported)
    image = _images(1)[0]
    for kwargs, match in (
        ({"dtype": torch.bfloat16}, "applies to the PyTorch backend"),
        ({"channels_last": True}, "channels_last applies"),
        ({"device": "cuda"}, "runs on the CPU"),
    ):
        with pytest.raises(ValueError, match=match):
            segmenter.predict(image, **kwargs)
    assert segmenter.predict(image, dtype="auto").size == (50, 70)  # "auto" is whatever the file holds
    with pytest.raises(ValueError, match="at least 8"):
        segmenter.predict(np.zeros((5, 6, 3), np.uint8), resize=False)
    bare = onnx.load(str(exported))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="no deeplabv3p metadata"):
        OnnxSegmenter(tmp_path / "bare.onnx")
    given = OnnxSegmenter(tmp_path / "bare.onnx", config=model.config, pretrained_cfg=model.pretrained_cfg)
    np.testing.assert_array_equal(given.predict(image).labels, model.predict(image).labels)
    with pytest.raises(FileNotFoundError):
        OnnxSegmenter(tmp_path / "missing.onnx")


def test_int8_quantization_keeps_the_labels(model, exported, tmp_path):
    calibration = _images(6, seed=1)
    inputs = list(calibration_inputs(model, calibration, limit=4))
    assert len(inputs) == 4 and inputs[0].shape == (1, 3, 57, 80)  # 50x70 rescaled to the test scale (80, 60)
    path = quantize_onnx(exported, tmp_path / "model.int8.onnx", inputs)
    graph = onnx.load(str(path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 10  # every conv's weights but the classifier's
    producers = {out: node for node in graph.graph.node for out in node.output}
    resize = producers["logits"]  # the logits path stays in float: no 8-bit logits
    classifier = producers[resize.input[0]]
    assert (resize.op_type, classifier.op_type) == ("Resize", "Conv")
    floats = {t.name for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert "classifier.conv.weight" in floats
    int8 = OnnxSegmenter(path)
    assert int8.pretrained_cfg.classes == ("sky", "road", "car")  # the metadata survived quantization
    held_out = _images(3, seed=2)
    agreement = label_agreement(model, int8, held_out)
    assert 0.95 <= agreement < 1.0  # close, and not the fp32 file by mistake
    assert label_agreement(model, OnnxSegmenter(exported), held_out) >= 0.999
    with pytest.raises(ValueError, match="no inputs"):
        quantize_onnx(exported, tmp_path / "empty.onnx", [])
    assert not (tmp_path / "empty.onnx").exists()


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_streamed_calibration_gives_onnxruntimes_ranges(model, exported, tmp_path, method):
    """Calibration feeds onnxruntime one input at a time (bounded memory); the ranges must be the ones it computes
    from all the inputs at once."""
    # fails if calibration drops inputs, e.g. onnxruntime's own CalibMaxIntermediateOutputs, which clears them
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    rng = np.random.default_rng(3)
    # one size: onnxruntime cannot histogram inputs of different sizes all at once (ours can, one at a time)
    images = [rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8) for _ in range(4)]
    inputs = list(calibration_inputs(model, images, limit=4))
    ours = onnx.load(str(quantize_onnx(exported, tmp_path / "ours.onnx", inputs, method=method)))

    class AllAtOnce:
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"input": x}

    prepared = tmp_path / "prepared.onnx"
    quant_pre_process(str(exported), str(prepared))
    quantize_static(
        str(prepared), str(tmp_path / "plain.onnx"), AllAtOnce(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method],
        nodes_to_exclude=logits_path(onnx.load(str(prepared))),
    )  # fmt: skip
    plain = onnx.load(str(tmp_path / "plain.onnx"))

    def ranges(graph) -> dict[str, np.ndarray]:
        return {
            t.name: onnx.numpy_helper.to_array(t)
            for t in graph.graph.initializer
            if t.name.endswith(("_scale", "_zero_point"))
        }

    got, want = ranges(ours), ranges(plain)
    assert got.keys() == want.keys() and len(got) > 20
    if method == "minmax":  # the same ranges, merged
        differing = [name for name in got if not np.array_equal(got[name], want[name])]
    else:  # histograms merged one input at a time are rebinned: the same ranges to within 0.1%
        differing = [
            name
            for name in got
            if not np.allclose(got[name].astype(np.float64), want[name], rtol=1e-3, atol=1 if "zero" in name else 0)
        ]
    assert not differing, differing[:5]
    if method == "percentile":  # which onnxruntime cannot do for inputs of different sizes
        varied = quantize_onnx(exported, tmp_path / "varied.onnx", calibration_inputs(model, _images(3)), method=method)
        assert label_agreement(model, OnnxSegmenter(varied), _images(2, seed=4)) >= 0.9


def test_a_file_whose_class_planes_differ_from_its_config_is_refused(model, exported, tmp_path):
    """Labels beyond the config's classes would reach colorize() and the class names: refuse at load where the
    file's shape says the count, else at the first call, with both numbers."""
    five = model.config.replace(num_classes=5)  # the file outputs 3 planes
    with pytest.raises(ValueError, match="output of 3 channels but its config says num_classes=5"):
        OnnxSegmenter(exported, config=five, pretrained_cfg=model.pretrained_cfg.replace(num_classes=5, classes=()))
    with pytest.raises(ValueError, match="input of 3 channels but its config says in_chans=4"):
        OnnxSegmenter(exported, config=model.config.replace(in_chans=4))

    # Channels left dynamic in the file: the output (the input repeated twice, 6 planes) is checked on the call.
    helper = onnx.helper
    dims = ["N", "C", "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Concat", ["input", "input"], ["logits"], axis=1)],
        "doubled",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", "K", "H", "W"])],
    )
    path = tmp_path / "doubled.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    config = model.config.replace(num_classes=3)
    segmenter = OnnxSegmenter(path, config=config, pretrained_cfg=model.pretrained_cfg.replace(num_classes=3))
    with pytest.raises(ValueError, match="output of 6 channels but its config says num_classes=3"):
        segmenter.predict(_images(1)[0])


def test_unavailable_providers_and_a_wrong_rank_are_named(model, exported, tmp_path):
    """onnxruntime silently falls back to the CPU for a provider it lacks and accepts any name: refuse both; a graph
    of another rank fails at load with the shape it has, not onnxruntime's "Invalid rank" on the first call."""
    with pytest.raises(ValueError, match=r"\['Bogus'\] not available in this onnxruntime build.*leave providers unset"):
        OnnxSegmenter(exported, providers=["Bogus"])
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, "L"])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3, "L"])],
    )
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match=r"has an input of shape \['N', 3, 'L'\].*\(N, C, H, W\)"):
        OnnxSegmenter(path, config=model.config, pretrained_cfg=model.pretrained_cfg)


def test_identity_tells_the_execution_providers_apart(exported):
    """A raster job resumed under another runtime setting must not take up the first setting's strips."""
    identity = OnnxSegmenter(exported).identity()
    assert "CPUExecutionProvider" in identity and str(exported.resolve()) in identity
