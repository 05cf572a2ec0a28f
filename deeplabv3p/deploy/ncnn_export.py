"""ncnn export through pnnx (the ``ncnn`` format of `deeplabv3p.deploy.export`).

``pnnx.export`` traces the model and converts it; it writes a dozen files (TorchScript, pnnx graph, ONNX, Python
modules) in a temporary work folder, of which the export keeps what ncnn runs: ``NAME.ncnn.param`` (the graph, the
path the user names) and ``NAME.ncnn.bin`` (fp32 weights: pnnx's fp16 default is turned off so that the file
meets the fp32 bound), plus the metadata sidecar ``NAME.ncnn.param.json``. Dynamic height and width come from
tracing at a second size (pnnx's ``inputs2``); ncnn runs one image at a time, so the batch is always free.

The image-pooling branch of ASPP broadcasts its 1x1 result with ``expand``, which pnnx leaves as an operator ncnn
does not have; the traced copy upsamples it with nearest-neighbour interpolation instead (the same values).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write_text
from ..models.decoder import ASPP
from .metadata import model_config, sidecar, to_json
from .ncnn_param import SUFFIX, bin_path, declare_input
from .packages import require

LOG_LINES = 20  # the tail of pnnx's output shown when it fails


def _aspp_forward(self: ASPP, x: torch.Tensor) -> torch.Tensor:
    """`ASPP.forward` with the pooled branch upsampled (``Interp`` in ncnn) rather than expanded."""
    pooled = F.interpolate(self.pool(x), size=(x.shape[2], x.shape[3]), mode="nearest")
    return self.project(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))


def traceable_copy(model: nn.Module) -> nn.Module:
    """An fp32 CPU eval copy of `model` whose operators pnnx converts to ncnn layers (the model is not modified)."""
    graph_model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    for module in graph_model.modules():
        if isinstance(module, ASPP):
            module.forward = types.MethodType(_aspp_forward, module)  # type: ignore[method-assign]
    return graph_model


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (the pnnx converter's progress) to `log` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log, "wb") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _tail(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    return "\n".join(lines[-LOG_LINES:]) or "(no output)"


def write(model: nn.Module, path: Path, *, input_size: tuple[int, int], dynamic: bool, optlevel: int = 2) -> None:
    """Write `model` (not modified) as ``NAME.ncnn.param`` at `path` with ``NAME.ncnn.bin`` and the metadata
    sidecar, converted by pnnx at `input_size` (height, width); with `dynamic` height and width are free.
    `optlevel`: pnnx's graph optimization level (0-2)."""
    pnnx = require("pnnx", "ncnn", "ncnn export")
    if not path.name.endswith(SUFFIX):
        raise ValueError(f"an ncnn export's path ends with {SUFFIX!r}, got {str(path)!r}")
    config = model_config(model)
    graph_model = traceable_copy(model)
    h, w = input_size
    example = torch.randn(1, config.in_chans, h, w)
    second = None
    if dynamic:  # a second, different size tells pnnx which dimensions are free
        m = config.output_stride
        second = torch.randn(1, config.in_chans, h + m if h < 2 * m else h - m, w + 2 * m)
    param, weights = path, bin_path(path)
    work = Path(tempfile.mkdtemp(prefix=".pnnx-", dir=path.parent))
    log = work / "pnnx.log"
    try:
        with torch.no_grad(), warnings.catch_warnings(), _output_to(log):
            # The tracer warns about the Python-side input checks; they hold for every traced size.
            warnings.simplefilter("ignore")
            try:
                pnnx.export(
                    graph_model,
                    str(work / "model.pt"),
                    example,
                    inputs2=second,
                    optlevel=optlevel,
                    ncnnparam=str(param),
                    ncnnbin=str(weights),
                    fp16=False,
                    check_trace=False,
                )
            except Exception as e:  # pnnx ignores the converter's exit status and fails later, loading its outputs
                failure: Exception | None = e
            else:
                failure = None
        if failure is not None or not (param.is_file() and weights.is_file()):
            raise RuntimeError(
                f"pnnx could not convert the model to ncnn ({failure or 'it wrote no ncnn files'}); its output "
                f"ended with:\n{_tail(log)}"
            )
    finally:
        sys.modules.pop(str(work / "model_pnnx"), None)  # pnnx.export imports its generated module under this name
        shutil.rmtree(work, ignore_errors=True)
    declare_input(param, config.in_chans, None if dynamic else (h, w))
    atomic_write_text(sidecar(path), to_json(model))
