"""INT8 for OpenVINO: NNCF post-training quantization of an exported ``.xml``, with accuracy control when held-out
inputs are given.

`quantize_openvino` calibrates activation ranges on real network inputs (`calibration_inputs`: images through
predict's own resize and normalization) with ``nncf.quantize``. Given held-out inputs it runs
``nncf.quantize_with_accuracy_control`` instead, whose metric is the share of pixels whose label equals the
reference's (PyTorch fp32 from the CLI, else the fp32 file itself run in f32): NNCF ranks the quantized layers by
how much they cost that agreement and returns the worst ones to full precision until the INT8 model is within
`max_drop` of the fp32 file (absolute drop: 0.005 keeps >= 99.5% of the labels when fp32 keeps 100%). The result
keeps the fp32 file's deeplabv3p metadata, so ``OpenVinoSegmenter("model.int8.xml")`` predicts with the same
test-time settings. Needs nncf (``pip install 'deeplabv3p[openvino]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..atomic import atomic_files
from ..fields import check_file, check_float, check_int
from .formats import get_format
from .openvino_export import read_metadata, save
from .packages import require

Preset = Literal["performance", "mixed"]
Reference = Callable[[np.ndarray], np.ndarray]  # network input (1, C, H, W) -> logits (1, K, H, W)


def quantize_openvino(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: Iterable[np.ndarray],
    *,
    held_out: Iterable[np.ndarray] | None = None,
    reference: Reference | None = None,
    max_drop: float = 0.005,
    preset: Preset = "performance",
    subset_size: int = 300,
) -> Path:
    """Write an INT8 copy (NNCF, int8 weights and activations) of an fp32 OpenVINO export at `out_path`.

    Args:
        fp32_path: an ``.xml`` from `deeplabv3p.deploy.export` (format ``openvino``).
        out_path: where the INT8 model goes (``NAME.int8.xml`` and its ``.bin``, written atomically).
        calibration: network inputs ``(1, C, H, W)`` float32, normalized as predict feeds them
            (`deeplabv3p.deploy.calibration.calibration_inputs`); a few dozen images cover the activation ranges.
        held_out: inputs not used for calibration; when given, quantization is accuracy-controlled: layers that
            cost label agreement go back to full precision until the drop is at most `max_drop`.
        reference: the network whose labels are the target on `held_out` (a callable from a float32 array to
            logits, e.g. PyTorch fp32 through `torch_reference`); default: the fp32 file run by OpenVINO in f32.
        max_drop: the largest absolute drop of label agreement allowed against the fp32 file (0.005: half a percent).
        preset: ``"performance"`` (symmetric activations) or ``"mixed"`` (asymmetric, closer for skewed ranges).
        subset_size: at most this many calibration inputs are used for the statistics.
    """
    require("openvino", "openvino", "OpenVINO INT8 quantization")
    nncf = require("nncf", "openvino", "OpenVINO INT8 quantization")
    import openvino as ov

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    check_file("fp32_path", fp32_path)
    check_float("max_drop", max_drop, 0.0, 1.0)
    check_int("subset_size", subset_size, 1)
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise ValueError(f"preset must be one of {list(presets)}, got {preset!r}")
    suffix = get_format("openvino").suffix
    if not out_path.name.endswith(suffix):
        raise ValueError(f"out_path {str(out_path)!r} must end with {suffix!r}, e.g. model.int8{suffix}")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(out_path.parent)!r} of the output path does not exist")
    source = ov.Core().read_model(str(fp32_path))
    inputs = [_as_input(x) for x in calibration]
    if not inputs:
        raise ValueError("calibration gave no inputs: pass at least one image")
    checks = None if held_out is None else [_as_input(x) for x in held_out]
    if checks is not None and not checks:
        raise ValueError("held_out gave no inputs: pass at least one image, or held_out=None for no accuracy control")
    settings: dict[str, Any] = dict(preset=presets[preset], subset_size=min(subset_size, len(inputs)))
    if checks is None:
        quantized = nncf.quantize(source, nncf.Dataset(inputs), **settings)
    else:
        if reference is None:
            reference = _fp32_reference(ov, source)
        items = [(x, np.asarray(reference(x)).argmax(1)) for x in checks]
        quantized = nncf.quantize_with_accuracy_control(
            source,
            nncf.Dataset(inputs),
            nncf.Dataset(items, lambda item: item[0]),
            label_agreement_metric,
            max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            **settings,
        )
    with atomic_files(out_path) as staging:
        save(quantized, staging / out_path.name, read_metadata(source))
    return out_path


def label_agreement_metric(compiled: Any, items: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float]]:
    """NNCF's validation function: the share of pixels whose label equals the reference label, overall and for each
    held-out input (NNCF ranks layers by the per-input values)."""
    same = total = 0
    each: list[float] = []
    for x, labels in items:
        got = np.asarray(compiled(x)[0]).argmax(1)
        equal = int(np.count_nonzero(got == labels))
        same, total = same + equal, total + labels.size
        each.append(equal / labels.size)
    return same / max(total, 1), each


def torch_reference(model: Any) -> Reference:
    """A PyTorch model as `quantize_openvino`'s reference: fp32 logits of a float32 array, on the CPU."""
    import copy

    import torch

    eager = copy.deepcopy(model).float().cpu().eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return eager(torch.from_numpy(x)).numpy()

    return run


def _fp32_reference(ov: Any, source: Any) -> Reference:
    compiled = ov.Core().compile_model(source, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: np.asarray(compiled(x)[0])


def _as_input(x: Any) -> np.ndarray:
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 4:
        raise ValueError(f"network inputs are (N, C, H, W) arrays, got one of shape {array.shape}")
    return array
