"""ExecuTorch export of a DeepLabV3+ model (the ``executorch`` format of `deeplabv3p.deploy.export`).

``torch.export`` (`deeplabv3p.deploy.torch_program`), then ``to_edge_transform_and_lower`` with the XNNPACK
partitioner (every convolution, pooling and resize runs in XNNPACK) and ``to_executorch``. The ``.pte`` program takes
``(1, C, H, W)`` float32 and returns ``(1, num_classes, H, W)`` logits. With `dynamic`, height and width are free
from ``output_stride + 1`` up to `max_size` (default: the export size): ExecuTorch plans its memory for the largest
input, so the bound is explicit. The bounds are stored in the program as constant methods (`MIN_HEIGHT`,
`MIN_WIDTH`); the model's config and test-time settings in a sidecar ``model.pte.json`` (`metadata.sidecar`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .metadata import model_config, sidecar, to_json
from .packages import require
from .torch_program import check_max_size, export_program, graph_copy, min_dynamic

MIN_HEIGHT = "deeplabv3p_min_height"
MIN_WIDTH = "deeplabv3p_min_width"


def write(model: nn.Module, path: Path, *, input_size: tuple[int, int], dynamic: bool, max_size: Any = None) -> None:
    """Write `model` (not modified) as an ExecuTorch program at `path` and its metadata beside it."""
    require("executorch", "executorch", "ExecuTorch export")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    config = model_config(model)
    largest = check_max_size(max_size, input_size, config.output_stride + 1) if dynamic else input_size
    program = export_program(graph_copy(model), input_size, dynamic=dynamic, max_size=largest)
    low = (min_dynamic(model),) * 2 if dynamic else input_size
    lowered = to_edge_transform_and_lower(
        program,
        partitioner=[XnnpackPartitioner()],
        constant_methods={MIN_HEIGHT: low[0], MIN_WIDTH: low[1]},
    ).to_executorch()
    path.write_bytes(lowered.buffer)
    sidecar(path).write_text(to_json(model), encoding="utf-8")
