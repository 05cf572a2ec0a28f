"""Deployment: a model exported to a runtime's format, proven to segment as PyTorch does, and run back behind the
same predict pipeline.

    report = deeplabv3p.deploy.export(model, "model.xml", format="openvino")   # written only if it agrees
    segmenter = deeplabv3p.deploy.load("model.xml")                           # any exported file
    segmenter.predict("street.png")
    segmenter, table = deeplabv3p.deploy.fastest(model, (512, 1024))     # the fastest backend here that agrees

One module per runtime (``onnx_export``/``onnx_runtime``/``onnx_int8``, ``openvino``, ...); `FORMATS` lists them with
the pip extra each needs. Above the inference layer: never imported by it or by training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is what runs (loaded on first access, see deeplabv3p.lazy)
    from .backend import DeployedBackend
    from .backend_table import BackendRow, BackendTable
    from .exporter import ExportReport, export
    from .formats import FORMATS, Format
    from .loader import load
    from .onnx_int8 import quantize_onnx
    from .onnx_runtime import OnnxSegmenter
    from .openvino_int8 import quantize_openvino
    from .openvino_runtime import OpenVinoSegmenter
    from .proof import Agreement, Bounds, ExportCheckError
    from .selection import backend_for, fastest

_EXPORTS = {
    "DeployedBackend": "backend",
    "BackendRow": "backend_table",
    "BackendTable": "backend_table",
    "ExportReport": "exporter",
    "export": "exporter",
    "FORMATS": "formats",
    "Format": "formats",
    "load": "loader",
    "quantize_onnx": "onnx_int8",
    "OnnxSegmenter": "onnx_runtime",
    "quantize_openvino": "openvino_int8",
    "OpenVinoSegmenter": "openvino_runtime",
    "Agreement": "proof",
    "Bounds": "proof",
    "ExportCheckError": "proof",
    "backend_for": "selection",
    "fastest": "selection",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
