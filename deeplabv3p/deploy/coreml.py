"""Core ML export of a DeepLabV3+ model (the ``coreml`` format of `deeplabv3p.deploy.export`) and its inspector.

``coremltools.convert`` turns the ``torch.export`` program into an ML program (``.mlpackage`` folder) computing in
float32, with one input ``input`` ``(1, C, H, W)`` and one output ``logits`` ``(1, num_classes, H, W)``; the
model's config and test-time settings go in ``user_defined_metadata`` under `deeplabv3p.deploy.metadata.KEY`.
Sizes are fixed: coremltools 9.0 cannot type the symbolic sizes of DeepLabV3+'s resizes (from ``torch.export``
with free height and width, or from a trace with ``RangeDim``), so a dynamic export is refused with the fix.
Core ML runs on Apple platforms only: on Linux `inspect` reopens the written spec and checks its inputs, outputs,
shapes, class count and metadata instead of running it.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from .formats import get_format
from .metadata import KEY, from_json, model_config, to_json
from .packages import require
from .proof import ExportCheckError
from .torch_program import export_program, graph_copy

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence coremltools' import-time warnings (its native library, absent off macOS; untested torch versions)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _coremltools(purpose: str) -> types.ModuleType:
    with _quiet():
        return require("coremltools", "coreml", purpose)


def write(
    model: nn.Module, path: Path, *, input_size: tuple[int, int], dynamic: bool, precision: str = "float32"
) -> None:
    """Write `model` (not modified) as a Core ML ML program at `path` (a ``.mlpackage`` folder) for inputs of
    `input_size`. `precision`: ``"float32"`` (as PyTorch computes) or ``"float16"`` (the Neural Engine's)."""
    get_format("coreml").check_dynamic(dynamic, input_size)
    ct = _coremltools("Core ML export")
    precisions = {"float32": ct.precision.FLOAT32, "float16": ct.precision.FLOAT16}
    if precision not in precisions:
        raise ValueError(f"precision must be one of {list(precisions)}, got {precision!r}")
    config = model_config(model)
    program = export_program(graph_copy(model), input_size, dynamic=False).run_decompositions({})
    with _quiet():
        converted = ct.convert(
            program,
            convert_to="mlprogram",
            inputs=[ct.TensorType(name=INPUT_NAME, shape=(1, config.in_chans, *input_size))],
            outputs=[ct.TensorType(name=OUTPUT_NAME)],
            compute_precision=precisions[precision],
        )
    converted.user_defined_metadata[KEY] = to_json(model)
    converted.short_description = f"DeepLabV3+ {config.architecture}: {config.num_classes}-class logits"
    converted.save(str(path))


def _shape(feature: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in feature.type.multiArrayType.shape)


def inspect(path: Path, model: nn.Module, *, input_size: tuple[int, int], dynamic: bool) -> list[str]:
    """Reopen the written spec without loading it (Core ML cannot run here) and check it against `model`: one input
    ``input`` and one output ``logits`` of the expected shapes, and metadata that reads back as the model's config.
    Returns the notes for the export report; raises ExportCheckError on a mismatch."""
    ct = _coremltools("inspecting a Core ML export")
    config = model_config(model)
    with _quiet():
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    description = spec.description
    inputs = [(f.name, _shape(f)) for f in description.input]
    outputs = [(f.name, _shape(f)) for f in description.output]
    expected_in = [(INPUT_NAME, (1, config.in_chans, *input_size))]
    expected_out = [(OUTPUT_NAME, (1, config.num_classes, *input_size))]
    problems = []
    if inputs != expected_in:
        problems.append(f"inputs {inputs}, expected {expected_in}")
    if outputs != expected_out:
        problems.append(f"outputs {outputs}, expected {expected_out}")
    stored = dict(description.metadata.userDefined).get(KEY)
    if stored is None:
        problems.append(f"no {KEY!r} in user_defined_metadata")
    else:
        stored_config, _ = from_json(stored, f"{path} metadata")
        if stored_config != config:
            problems.append(f"metadata config {stored_config} differs from the model's {config}")
    if problems:
        raise ExportCheckError(f"the Core ML spec written for {str(path)!r} is wrong: " + "; ".join(problems))
    h, w = input_size
    return [
        "Core ML cannot run on Linux: the spec was checked instead: input 'input' "
        f"{expected_in[0][1]}, output 'logits' {expected_out[0][1]} ({config.num_classes} classes), metadata "
        f"'{KEY}' read back as the model's config; run it on macOS/iOS to prove it (fixed size {h}x{w})"
    ]
