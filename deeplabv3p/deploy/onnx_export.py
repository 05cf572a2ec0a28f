"""ONNX export of a DeepLabV3+ model (the ``onnx`` format of `deeplabv3p.deploy.export`).

The graph takes ``input`` (N, C, H, W) float32 and returns ``logits`` (N, num_classes, H, W); batch, height and
width are dynamic by default, so one file serves every image size (at least the output stride on each side). The
file's ``metadata_props`` hold the model's config and test-time settings (`deeplabv3p.deploy.metadata`), so
``OnnxSegmenter(path).predict(image)`` segments exactly as ``model.predict(image)`` does.
Export uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs only ``onnx``, not ``onnxscript``,
and handles the data-dependent resize sizes of DeepLabV3+ without guards. BatchNorm layers are folded into the
convolutions by the exporter. The ONNX graph is also what the OpenVINO and TensorRT formats start from.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fields import check_int
from .metadata import KEY, model_config, to_json
from .opset import DEFAULT_OPSET, MIN_OPSET
from .packages import require

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def write(
    model: nn.Module,
    path: Path,
    *,
    input_size: tuple[int, int],
    dynamic: bool,
    batch_size: int = 1,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Write `model` (not modified) as an ONNX graph at `path`, traced at `input_size` (height, width) and
    `batch_size`; with `dynamic`, batch, height and width are free. `opset`: `MIN_OPSET` or newer."""
    onnx = require("onnx", "onnx", "ONNX export")
    check_int("opset", opset, MIN_OPSET)
    check_int("batch_size", batch_size, 1)
    config = model_config(model)
    graph_model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(batch_size, config.in_chans, *input_size)
    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs: dict[str, Any] = dict(
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
        do_constant_folding=True,
    )
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: no onnxscript needed
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the Python-side input checks; they hold for every traced size.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(graph_model, (example,), str(path), **kwargs)
    graph = onnx.load(str(path))
    if dynamic:  # the tracer leaves the class dimension symbolic: declare the fixed number it is
        dim = graph.graph.output[0].type.tensor_type.shape.dim[1]
        dim.Clear()
        dim.dim_value = config.num_classes
    set_metadata(graph, to_json(model))
    onnx.save(graph, str(path))


def set_metadata(graph: Any, text: str) -> None:
    """Store deeplabv3p metadata (`deeplabv3p.deploy.metadata.to_json`'s text) in an ONNX graph's metadata_props."""
    kept = [p for p in graph.metadata_props if p.key != KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    prop = graph.metadata_props.add()
    prop.key, prop.value = KEY, text
