"""ONNX export of a DeepLabV3+ model, and the check of an exported file against eager PyTorch with onnxruntime.

The graph takes ``input`` (N, C, H, W) float32 and returns ``logits`` (N, num_classes, H, W); batch, height and
width are dynamic by default, so one file serves every image size (at least the output stride on each side). The
file's metadata holds the model's config and test-time settings (`META_CONFIG`), so
``OnnxSegmenter(path).predict(image)`` segments exactly as ``model.predict(image)`` does.
Export uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs only ``onnx``, not ``onnxscript``,
and handles the data-dependent resize sizes of DeepLabV3+ without guards. Default opset: `DEFAULT_OPSET`.
Needs the ``onnx`` extra (``pip install deeplabv3p[onnx]``: onnx and onnxruntime).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from ..fields import check_int, check_pair
from ..models.config import ModelConfig
from ..pretrained.config import pretrained_cfg_for
from ..pretrained.saved import config_dict
from .opset import DEFAULT_OPSET, MIN_OPSET

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# Documented agreement of an exported fp32 model with eager PyTorch on the CPU: max |diff| relative to max |logit|.
ONNX_RTOL = 1e-4


def require_package(module: str) -> types.ModuleType:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"ONNX export needs the {module!r} package: pip install 'deeplabv3p[onnx]' (onnx and onnxruntime)"
        ) from None


def _model_dims(model: nn.Module) -> tuple[int, int]:
    """(in_chans, minimum input size) of a DeepLabV3+ model, or a plain module's first conv."""
    config = getattr(model, "config", None)
    if config is not None:
        return config.in_chans, config.output_stride
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"cannot tell the input channels of {type(model).__name__}: it has no Conv2d")
    return first.in_channels, 32


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    input_size: Sequence[int] = (512, 512),
    batch_size: int = 1,
) -> Path:
    """Export `model` (eval mode, float32, CPU) to an ONNX file at `path`, written atomically.

    Args:
        model: a DeepLabV3+ model (any ``nn.Module`` taking one NCHW tensor works). It is not modified.
        path: output file (conventionally ``.onnx``); its folder must exist.
        opset: ONNX opset version, `MIN_OPSET` or newer; default `DEFAULT_OPSET`.
        dynamic: make batch, height and width dynamic; with False the graph is fixed to `input_size` and `batch_size`.
        input_size: (height, width) of the example input used for tracing (and the fixed size when not dynamic).
        batch_size: batch of the example input.

    BatchNorm layers are folded into the convolutions by the exporter (eval mode), so the graph has none.

    Returns:
        The path written.
    """
    require_package("onnx")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_int("opset", opset, MIN_OPSET)
    check_int("batch_size", batch_size, 1)
    in_chans, minimum = _model_dims(model)
    height, width = check_pair("input_size", input_size, minimum)  # at least the output stride
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; give a file name such as model.onnx")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(path.parent)!r} of the output path does not exist")

    graph_model = copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(batch_size, in_chans, height, width)
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
    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about the Python-side input checks; they hold for every traced size.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.onnx.export(graph_model, (example,), str(tmp), **kwargs)
        _finish_graph(tmp, model, dynamic)
    return path


# Key of the ONNX metadata_props entry holding the saved-model config (``config.json``'s content, see
# `deeplabv3p.pretrained.saved`): what predict needs besides the graph (see OnnxSegmenter).
META_CONFIG = "deeplabv3p.config"


def _finish_graph(path: Path, model: nn.Module, dynamic: bool) -> None:
    """Declare the logits' class dimension as the fixed number it is (the tracer leaves it symbolic) and store the
    model's config and weights metadata, so that `OnnxSegmenter` predicts with the same test-time settings."""
    onnx = require_package("onnx")
    graph = onnx.load(str(path))
    num_classes = getattr(model, "num_classes", None)
    if dynamic and isinstance(num_classes, int):
        dim = graph.graph.output[0].type.tensor_type.shape.dim[1]
        dim.Clear()
        dim.dim_value = num_classes
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig):
        set_metadata(graph, config_dict(config, pretrained_cfg_for(config, getattr(model, "pretrained_cfg", None))))
    onnx.save(graph, str(path))


def set_metadata(graph: Any, config: dict[str, Any]) -> None:
    """Store a saved-model config (`deeplabv3p.pretrained.saved.config_dict`) in an ONNX graph's metadata."""
    kept = [p for p in graph.metadata_props if p.key != META_CONFIG]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    prop = graph.metadata_props.add()
    prop.key, prop.value = META_CONFIG, json.dumps(config)


@dataclass(frozen=True)
class OnnxCheck:
    """Agreement of an ONNX file with the eager model at one input size."""

    size: tuple[int, int]
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float

    @property
    def rel_diff(self) -> float:
        """max |onnx - eager| relative to max |eager logit|."""
        return self.max_abs_diff / max(self.max_abs_logit, 1e-12)


def check_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    sizes: Sequence[Sequence[int]] = ((256, 320), (193, 449)),
    batch_size: int = 1,
    seed: int = 0,
    rtol: float | None = ONNX_RTOL,
) -> list[OnnxCheck]:
    """Run the ONNX file with onnxruntime (CPU) and eager `model` on random inputs at each of `sizes`; compare.

    Returns one `OnnxCheck` per size. With `rtol` set, raises ValueError when a relative logits difference exceeds it.
    """
    ort = require_package("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist")
    in_chans, minimum = _model_dims(model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    eager = copy.deepcopy(model).float().cpu().eval()
    generator = torch.Generator().manual_seed(seed)
    results = []
    for size in sizes:
        height, width = check_pair("sizes entries", size, minimum)
        x = torch.randn(batch_size, in_chans, height, width, generator=generator)
        with torch.inference_mode():
            expected = eager(x)
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
        if got.shape != expected.shape:
            raise ValueError(f"ONNX output has shape {tuple(got.shape)} for input {tuple(x.shape)}, eager gives "
                             f"{tuple(expected.shape)}")  # fmt: skip
        results.append(
            OnnxCheck(
                size=(height, width),
                max_abs_diff=(got - expected).abs().max().item(),
                max_abs_logit=expected.abs().max().item(),
                argmax_agreement=(got.argmax(1) == expected.argmax(1)).double().mean().item(),
            )
        )
    if rtol is not None:
        bad = [r for r in results if r.rel_diff > rtol]
        if bad:
            raise ValueError(
                f"ONNX file {str(path)!r} disagrees with eager PyTorch beyond rtol={rtol}: "
                + ", ".join(f"{r.size[0]}x{r.size[1]} (HxW): rel diff {r.rel_diff:.2e}" for r in bad)
            )
    return results
