"""LiteRT (TensorFlow Lite) export of a DeepLabV3+ model (the ``litert`` format of `deeplabv3p.deploy.export`).

``litert_torch.convert`` (the successor of ai-edge-torch) converts the ``torch.export`` program of a copy of the
model whose ASPP pool broadcast is a resize (`deeplabv3p.deploy.torch_program.resize_pool_broadcast`: LiteRT's
layout pass breaks the ``expand``). The ``.tflite`` flatbuffer keeps PyTorch's NCHW contract: ``(1, C, H, W)``
float32 in, ``(1, num_classes, H, W)`` logits out (the converter adds the transposes around its NHWC kernels).
Sizes are fixed: litert-torch 0.10 declares a free input but keeps the output shape of the example, and XNNPACK
then fails at any other size, so a dynamic export is refused with the fix. The model's config and test-time
settings go in a sidecar ``model.tflite.json`` (`metadata.sidecar`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch import nn

from .formats import get_format
from .metadata import model_config, sidecar, to_json
from .packages import require
from .torch_program import graph_copy, resize_pool_broadcast


def write(model: nn.Module, path: Path, *, input_size: tuple[int, int], dynamic: bool) -> None:
    """Write `model` (not modified) as a ``.tflite`` file at `path` for inputs of `input_size`, and its metadata."""
    get_format("litert").check_dynamic(dynamic, input_size)
    litert_torch = require("litert_torch", "litert", "LiteRT export")
    config = model_config(model)
    example = torch.randn(1, config.in_chans, *input_size)
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):  # its progress lines, away from the report
        converted = litert_torch.convert(resize_pool_broadcast(graph_copy(model)), (example,))
        converted.export(str(path))
    sidecar(path).write_text(to_json(model), encoding="utf-8")
