"""INT8 for CPU deployment: static quantization of an exported ONNX model with onnxruntime's quantization tools.

`quantize_onnx` calibrates activation ranges on real network inputs (`calibration_inputs`: images through the
pipeline's own resize and normalization, or slide windows of them) and writes a QDQ model: int8 weights per output
channel, uint8 activations (the u8s8 kernels of x86 VNNI). The logits path (the classifier conv and the resize to
the input size, `logits_path`) stays in float: quantized logits have 256 levels over their whole range, and every
pixel whose two best classes lie within one level may flip (on the trained R-50-D8 benchmark network: 97.72% of
the labels kept with it quantized, 97.99% without, for a conv of 0.05% of the work). The file keeps the fp32
file's deeplabv3p metadata, so ``OnnxSegmenter("model.int8.onnx")`` predicts with the same test-time settings.
Whether it pays is a property of the machine: measure it (``benchmarks/run.py``, ``benchmarks/int8_demo.py``)
before deploying it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..atomic import atomic_path
from ..fields import check_file
from .metadata import KEY
from .onnx_export import set_metadata
from .packages import require

CalibrationMethod = Literal["minmax", "entropy", "percentile"]
DEFAULT_METHOD: CalibrationMethod = "percentile"  # trained R-50-D8, 8 held-out images: 98.48% of labels, minmax 98.11%


class _SpooledInputs:
    """onnxruntime's CalibrationDataReader over network inputs spooled to ``.npy`` files, one read at a time.

    onnxruntime keeps every intermediate activation of every input it is handed in one ``collect_data`` call (gigabytes
    an image for a DeepLabV3+ at full resolution). Its strided calibration (``CalibStridedMinMax``, any method)
    calls ``collect_data`` once a range and merges the results; it needs the reader's length and ``set_range``, so
    the inputs are written to disk first and read back one by one.
    """

    def __init__(self, inputs: Iterable[np.ndarray], name: str, folder: Path) -> None:
        self._name = name
        self._files: list[Path] = []
        for i, x in enumerate(inputs):
            path = folder / f"input_{i:06d}.npy"
            np.save(path, np.ascontiguousarray(x, dtype=np.float32))
            self._files.append(path)
        self._next, self._end = 0, len(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self._files))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        x = np.load(self._files[self._next])
        self._next += 1
        return {self._name: x}


def quantize_onnx(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: Iterable[np.ndarray],
    *,
    method: CalibrationMethod = DEFAULT_METHOD,
    per_channel: bool = True,
) -> Path:
    """Write a statically quantized (QDQ, u8 activations, s8 per-channel weights) copy of an fp32 ONNX file.

    Args:
        fp32_path: a file from `deeplabv3p.deploy.export`.
        out_path: where the INT8 model goes (written atomically).
        calibration: network inputs ``(N, C, H, W)`` float32, normalized as predict feeds them
            (`deeplabv3p.deploy.calibration.calibration_inputs`); a few dozen images cover the activation ranges.
        method: how activation ranges are chosen from what calibration saw: ``"percentile"`` (99.999% of it, the
            default: a rare outlier does not coarsen every other value's step), ``"minmax"`` (the full range) or
            ``"entropy"`` (KL divergence); percentile and entropy keep histograms (about twice minmax's time).
        per_channel: one weight scale per output channel (False: per tensor).
    """
    onnx = require("onnx", "onnx", "ONNX INT8 quantization")
    require("onnxruntime", "onnx", "ONNX INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod as Method
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": Method.MinMax, "entropy": Method.Entropy, "percentile": Method.Percentile}
    if method not in methods:
        raise ValueError(f"method must be one of {list(methods)}, got {method!r}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    check_file("fp32_path", fp32_path)
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(out_path.parent)!r} of the output path does not exist")
    source = onnx.load(str(fp32_path))
    metadata = {p.key: p.value for p in source.metadata_props}
    input_name = source.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="deeplabv3p-int8-") as work:
        reader = _SpooledInputs(calibration, input_name, Path(work))
        if not len(reader):
            raise ValueError("calibration gave no inputs: pass at least one image")
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference and graph clean-up, as ORT advises
        with atomic_path(out_path) as tmp:
            quantize_static(
                str(prepared),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                nodes_to_exclude=logits_path(onnx.load(str(prepared), load_external_data=False)),
                extra_options={"CalibStridedMinMax": 1},  # one input's activations in memory at a time
            )
            quantized = onnx.load(str(tmp))
            if KEY in metadata:
                set_metadata(quantized, metadata[KEY])
            onnx.save(quantized, str(tmp))
    return out_path


def logits_path(model: Any) -> list[str]:
    """Names of the nodes from the graph's output back to the last Conv, that conv included (the classifier and
    the resize of its logits): what `quantize_onnx` keeps in float."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    node = producers.get(model.graph.output[0].name)
    while node is not None:
        names.append(node.name)
        if node.op_type == "Conv":
            return names
        node = producers.get(node.input[0]) if node.input else None
    return []  # no conv on the way: nothing to keep
