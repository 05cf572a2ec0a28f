"""The deployment formats: one record each, naming the module that writes it and the backend that runs it.

A format's writer is ``write(model, path, *, input_size, dynamic, **options)``: it writes the export at `path` (a
name inside a staging folder; `deeplabv3p.deploy.export` checks and publishes it) together with any sibling files
and the metadata (`deeplabv3p.deploy.metadata`). Its loader is ``load(path, **kwargs) -> DeployedBackend``.
Both are named as ``"module:attribute"`` under this package and imported on use, so that listing the formats needs
no runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spelling import arg
from .packages import require


@dataclass(frozen=True)
class Format:
    """One deployment format.

    Attributes:
        name: what ``--format`` takes.
        suffix: the conventional ending of the exported path (a folder for ``folder`` formats).
        extra: the pip extra that installs what export and loading need (``pip install 'deeplabv3p[EXTRA]'``).
        export_packages: modules the writer imports; checked before any work starts.
        run_packages: modules the loader imports (empty where the file cannot run on this kind of machine).
        writer, loader: ``"module:attribute"`` in `deeplabv3p.deploy`.
        inspector: ``"module:attribute"`` of ``inspect(path, model, *, input_size, dynamic) -> list[str]``, the
            check of an export that cannot run here (its inputs, outputs, shapes and metadata): notes, or raises.
        runs_on_cpu: whether the export runs on a CPU-only Linux machine, so that export can prove it.
        folder: the export is a folder (Core ML ``.mlpackage``) rather than a file.
        max_size: the writer takes ``max_size=`` (the largest input of a dynamic export: ``--max-size``).
        fixed_size: why the format holds one input size only (its writer refuses ``dynamic=True``); None where it
            exports free sizes too.
        quantizer: ``"module:attribute"`` of the format's INT8 step, ``quantize(fp32_path, out_path, calibration,
            **options) -> Path`` (`calibration`: network inputs as `deeplabv3p.deploy.calibration.calibration_inputs`
            makes them); None where ``--int8`` is not offered.
        summary: one line for ``--help`` and the README.
    """

    name: str
    suffix: str
    extra: str
    export_packages: tuple[str, ...]
    run_packages: tuple[str, ...]
    writer: str
    loader: str | None
    runs_on_cpu: bool
    summary: str
    folder: bool = False
    inspector: str | None = None
    max_size: bool = False
    fixed_size: str | None = None
    quantizer: str | None = None

    def check_dynamic(self, dynamic: bool, input_size: tuple[int, int]) -> None:
        """Refuse a dynamic export of a fixed-size format (`fixed_size`), saying why and how to export one size."""
        if dynamic and self.fixed_size is not None:
            h, w = input_size
            raise ValueError(
                f"the {self.name} format exports fixed sizes only ({self.fixed_size}): pass dynamic=False "
                f"(deeplabv3p export --static) with {arg('input_size', (h, w))} the size you will run, and predict "
                f"with {arg('mode', 'slide')} {arg('crop_size', (h, w))} for other image sizes"
            )

    def require_export(self) -> None:
        """Import what the writer needs, or raise ImportError naming the extra."""
        for module in self.export_packages:
            require(module, self.extra, f"{self.name} export")

    def require_run(self) -> None:
        """Import what the loader needs, or raise ImportError naming the extra."""
        for module in self.run_packages:
            require(module, self.extra, f"running a {self.name} export")

    def write_function(self) -> Callable[..., None]:
        return _resolve(self.writer)

    def inspect_function(self) -> Callable[..., list[str]]:
        if self.inspector is None:
            raise ValueError(f"the {self.name} format has no inspector")
        return _resolve(self.inspector)

    def quantize_function(self) -> Callable[..., Path]:
        if self.quantizer is None:
            with_int8 = [f.name for f in FORMATS.values() if f.quantizer is not None]
            raise ValueError(f"INT8 is available for the formats {with_int8}, not {self.name}")
        return _resolve(self.quantizer)

    def int8_path(self, fp32_path: str | Path) -> Path:
        """Where the INT8 copy of an export goes: ``NAME.int8.EXT`` beside it."""
        fp32_path = Path(fp32_path)
        return fp32_path.with_name(fp32_path.name.removesuffix(self.suffix) + ".int8" + self.suffix)

    def load_function(self) -> Callable[..., Any]:
        if self.loader is None:
            raise ValueError(f"a {self.name} export cannot run here ({self.summary})")
        return _resolve(self.loader)


def _resolve(reference: str) -> Any:
    module, attribute = reference.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), attribute)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            name="onnx",
            suffix=".onnx",
            extra="onnx",
            export_packages=("onnx", "onnxruntime"),
            run_packages=("onnxruntime",),
            writer="onnx_export:write",
            loader="onnx_runtime:OnnxSegmenter",
            runs_on_cpu=True,
            summary="ONNX, run by onnxruntime (CPU; dynamic or static shapes; INT8 with --int8)",
            quantizer="onnx_int8:quantize_onnx",
        ),
        Format(
            name="openvino",
            suffix=".xml",
            extra="openvino",
            export_packages=("openvino", "onnx"),
            run_packages=("openvino",),
            writer="openvino_export:write",
            loader="openvino_runtime:OpenVinoSegmenter",
            runs_on_cpu=True,
            summary="OpenVINO IR (.xml + .bin; CPU, f32 explicit; dynamic or static shapes; NNCF INT8 with --int8)",
            quantizer="openvino_int8:quantize_openvino",
        ),
        Format(
            name="executorch",
            suffix=".pte",
            extra="executorch",
            export_packages=("executorch",),
            run_packages=("executorch",),
            writer="executorch_export:write",
            loader="executorch_runtime:ExecuTorchSegmenter",
            runs_on_cpu=True,
            summary="ExecuTorch program lowered to XNNPACK (CPU, mobile; dynamic sizes up to the export size)",
            max_size=True,
        ),
        Format(
            name="litert",
            suffix=".tflite",
            extra="litert",
            export_packages=("litert_torch", "ai_edge_litert"),
            run_packages=("ai_edge_litert",),
            writer="litert_export:write",
            loader="litert_runtime:LiteRTSegmenter",
            runs_on_cpu=True,
            summary="LiteRT (TensorFlow Lite) through litert-torch (CPU, mobile; fixed size: --static)",
            fixed_size="litert-torch keeps the example's output shape",
        ),
        Format(
            name="coreml",
            suffix=".mlpackage",
            extra="coreml",
            export_packages=("coremltools",),
            run_packages=(),
            writer="coreml:write",
            loader=None,
            runs_on_cpu=False,
            summary="Core ML ML program (Apple devices; fixed size: --static; its spec is checked on Linux)",
            folder=True,
            inspector="coreml:inspect",
            fixed_size="coremltools cannot convert the resizes with free sizes",
        ),
        Format(
            name="ncnn",
            suffix=".ncnn.param",
            extra="ncnn",
            export_packages=("pnnx", "ncnn"),
            run_packages=("ncnn",),
            writer="ncnn_export:write",
            loader="ncnn_runtime:NcnnSegmenter",
            runs_on_cpu=True,
            summary="ncnn graph + NAME.ncnn.bin weights, converted by pnnx (CPU/mobile; dynamic or static shapes)",
        ),
        Format(
            name="tensorrt",
            suffix=".engine",
            extra="tensorrt",
            export_packages=("tensorrt", "onnx"),
            run_packages=("tensorrt",),
            writer="tensorrt_export:write",
            loader="tensorrt_runtime:TensorRTSegmenter",
            runs_on_cpu=False,
            summary="TensorRT engine built from ONNX (NVIDIA GPU of the building machine; fp16 with fp16=True)",
            inspector="tensorrt_runtime:prove",
            max_size=True,
        ),
    )
}


def get_format(name: str) -> Format:
    """The format called `name`, or a ValueError listing the known ones."""
    if name not in FORMATS:
        raise ValueError(f"format={name!r} is not a deployment format; choose one of {sorted(FORMATS)}")
    return FORMATS[name]


def format_of(path: str | Path) -> Format:
    """The format of an exported path, from its ending (``.onnx``, ``.xml``, ``.pte``, ...)."""
    name = Path(path).name
    for fmt in sorted(FORMATS.values(), key=lambda f: -len(f.suffix)):  # longest first: ".int8.onnx" is ".onnx"
        if name.endswith(fmt.suffix):
            return fmt
    known = ", ".join(f"{f.suffix} ({f.name})" for f in FORMATS.values())
    raise ValueError(f"cannot tell the deployment format of {str(path)!r} from its name: known endings are {known}")
