"""TensorRT engine export (the ``tensorrt`` format of `deeplabv3p.deploy.export`): ONNX, then TensorRT's builder.

The model is written as ONNX (`deeplabv3p.deploy.onnx_export`) in a temporary file, parsed by TensorRT's ONNX
parser and built into a serialized engine ``NAME.engine`` for the GPU of this machine (an engine runs only on the
GPU model and TensorRT version that built it). With `dynamic`, one optimization profile covers batch 1 to
`max_batch` and heights and widths from `min_size` to `max_size`, tuned for `input_size`; otherwise the engine takes
batch 1 at `input_size` only. `fp16` lets TensorRT pick half-precision kernels; without it TF32 is turned off too,
so that the engine computes in full fp32. The metadata goes to the sidecar ``NAME.engine.json``.

Building needs an NVIDIA GPU and the ``tensorrt`` package (``pip install 'deeplabv3p[tensorrt]'``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from ..atomic import atomic_write_text
from ..fields import check_bool, check_int, check_pair
from ..spelling import arg
from .metadata import model_config, sidecar, to_json
from .onnx_export import INPUT_NAME
from .onnx_export import write as write_onnx
from .opset import DEFAULT_OPSET
from .packages import require

SUFFIX = ".engine"
WORKSPACE_GIB = 4  # the builder's scratch memory limit (tactics needing more are skipped)


def require_tensorrt(purpose: str) -> Any:
    """The ``tensorrt`` module, once a CUDA GPU is known to be there; else an error naming what is missing."""
    trt = require("tensorrt", "tensorrt", purpose)
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{purpose} needs an NVIDIA GPU with CUDA, and this machine has none (torch.cuda.is_available() is "
            "False): build and run the engine on the GPU machine that will serve it, or use a CPU format "
            "(--format onnx or ncnn) here"
        )
    return trt


def logger(trt: Any) -> Any:
    """TensorRT's logger at warning level (its info messages are a page per build)."""
    return trt.Logger(trt.Logger.WARNING)


def _network_flags(trt: Any) -> int:
    """Explicit batch: the default (and only mode) from TensorRT 10, a flag before it."""
    if int(trt.__version__.split(".")[0]) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def write(
    model: nn.Module,
    path: Path,
    *,
    input_size: tuple[int, int],
    dynamic: bool,
    fp16: bool = False,
    min_size: tuple[int, int] | None = None,
    max_size: tuple[int, int] | None = None,
    max_batch: int = 4,
    workspace_gib: float = WORKSPACE_GIB,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Build `model` (not modified) into a TensorRT engine at `path`, tuned for `input_size` (height, width).

    Args:
        fp16: allow half-precision kernels (faster; labels, not logits, stay close to fp32: see the README).
        min_size, max_size: with `dynamic`, the smallest and largest (height, width) the engine takes (default: the
            output stride on each side, and twice `input_size`).
        max_batch: with `dynamic`, the largest batch (slide windows are batched 4 at a time by default).
        workspace_gib: the builder's scratch memory limit.
        opset: of the intermediate ONNX graph.
    """
    trt = require_tensorrt("TensorRT export")
    config = model_config(model)
    check_bool("fp16", fp16)
    check_int("max_batch", max_batch, 1)
    if not workspace_gib > 0:
        raise ValueError(f"workspace_gib must be > 0, got {workspace_gib!r}")
    h, w = input_size
    m = config.output_stride
    low = check_pair("min_size", min_size, m) if min_size is not None else (m, m)
    high = check_pair("max_size", max_size, m) if max_size is not None else (2 * h, 2 * w)
    if dynamic and not (low[0] <= h <= high[0] and low[1] <= w <= high[1]):
        raise ValueError(
            f"{arg('input_size', input_size)} is outside {arg('min_size', low)} .. {arg('max_size', high)}: the "
            "engine is tuned for the example's size, which must lie between them"
        )
    work = Path(tempfile.mkdtemp(prefix=".tensorrt-", dir=path.parent))
    try:
        onnx_path = work / "model.onnx"
        write_onnx(model, onnx_path, input_size=input_size, dynamic=dynamic, opset=opset)
        log = logger(trt)
        builder = trt.Builder(log)
        network = builder.create_network(_network_flags(trt))
        parser = trt.OnnxParser(network, log)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT's ONNX parser refused the model: {errors or 'no message'}")
        build = builder.create_builder_config()
        build.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
        if fp16:
            build.set_flag(trt.BuilderFlag.FP16)
        else:
            build.clear_flag(trt.BuilderFlag.TF32)  # full fp32, so that the fp32 bound can hold
        if dynamic:
            profile = builder.create_optimization_profile()
            c = config.in_chans
            profile.set_shape(INPUT_NAME, (1, c, *low), (1, c, h, w), (max_batch, c, *high))
            build.add_optimization_profile(profile)
        engine = builder.build_serialized_network(network, build)
        if engine is None:
            raise RuntimeError(
                "TensorRT could not build an engine for the model (see its log above; a smaller max_size or a "
                "larger workspace_gib may help)"
            )
        with open(path, "wb") as f:
            f.write(memoryview(engine))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atomic_write_text(sidecar(path), to_json(model))
