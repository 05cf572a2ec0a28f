"""OpenVINO export of a DeepLabV3+ model (the ``openvino`` format of `deeplabv3p.deploy.export`).

The model goes through the ONNX graph of `deeplabv3p.deploy.onnx_export` (BatchNorm folded, batch, height and width
dynamic) and OpenVINO's documented converter, ``openvino.convert_model``, and is saved as ``NAME.xml`` (the graph)
and ``NAME.bin`` (the weights) in full precision (``compress_to_fp16=False``: OpenVINO would otherwise store the
weights as fp16). The ONNX route is chosen over converting the PyTorch module directly because it gives the same
logits (relative difference ~1e-7) with free height and width in a fraction of the conversion time. The model's
config and test-time settings go into the model's ``rt_info`` under `deeplabv3p.deploy.metadata.KEY`, so
``OpenVinoSegmenter("model.xml").predict(image)`` segments as ``model.predict(image)`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from . import onnx_export
from .metadata import KEY, to_json
from .packages import require


def write(model: nn.Module, path: Path, *, input_size: tuple[int, int], dynamic: bool, batch_size: int = 1) -> None:
    """Write `model` (not modified) as ``path`` (``.xml``) and its ``.bin`` weights, traced at `input_size`
    (height, width) and `batch_size`; with `dynamic`, batch, height and width are free."""
    require("openvino", "openvino", "OpenVINO export")
    intermediate = path.with_name(path.name + ".intermediate.onnx")
    try:
        onnx_export.write(model, intermediate, input_size=input_size, dynamic=dynamic, batch_size=batch_size)
        ov_model = convert(intermediate)
    finally:
        intermediate.unlink(missing_ok=True)
    save(ov_model, path, to_json(model))


def convert(onnx_path: Path) -> Any:
    """The ``openvino.Model`` of an ONNX file (`onnx_export.write`'s), its names kept."""
    import openvino as ov

    return ov.convert_model(str(onnx_path))


def save(ov_model: Any, path: Path, metadata: str | None) -> None:
    """Save an ``openvino.Model`` at `path` (``.xml`` and ``.bin`` beside it) in full precision, with `metadata`
    (`deeplabv3p.deploy.metadata.to_json`'s text) in its rt_info when given."""
    import openvino as ov

    if metadata is not None:
        ov_model.set_rt_info(metadata, [KEY])
    ov.save_model(ov_model, str(path), compress_to_fp16=False)


def read_metadata(ov_model: Any) -> str | None:
    """The deeplabv3p metadata stored in an ``openvino.Model``'s rt_info, or None when it has none."""
    if not ov_model.has_rt_info([KEY]):
        return None
    return str(ov_model.get_rt_info([KEY]).astype(str))
