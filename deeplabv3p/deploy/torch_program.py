"""The ``torch.export`` program that the ExecuTorch, LiteRT and Core ML formats convert, made once here.

Two facts about DeepLabV3+ under ``torch.export`` decide how it is exported:

* Free height and width need a lower bound above the output stride: at exactly the stride the deepest feature map
  is 1x1 and PyTorch specializes on that size-1 broadcast, so the bound is ``output_stride + 1`` (`MIN_DYNAMIC`).
* The ASPP image-pool branch broadcasts a (N, C, 1, 1) tensor to the feature map with ``expand``. ExecuTorch runs
  it, but LiteRT's NHWC layout pass turns it into an invalid BROADCAST_TO and coremltools cannot type its symbolic
  shape; `resize_pool_broadcast` rewrites it (in a copy) as a nearest resize from 1x1, which gives the same values.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..fields import check_pair
from ..models.decoder import ASPP
from ..spelling import arg
from .metadata import model_config


class _ResizedPoolASPP(ASPP):
    """ASPP whose image-pool branch is broadcast by a nearest resize (bit-identical to ``expand``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[2:], mode="nearest")
        return self.project(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))


def graph_copy(model: nn.Module) -> nn.Module:
    """A float32, CPU, eval-mode, contiguous copy of `model` to export (the model itself is not modified)."""
    return copy.deepcopy(model).float().cpu().eval().to(memory_format=torch.contiguous_format)


def resize_pool_broadcast(model: nn.Module) -> nn.Module:
    """`model` (a copy to export) with every ASPP's pool broadcast done by a resize; returns `model`."""
    for module in model.modules():
        if type(module) is ASPP:
            module.__class__ = _ResizedPoolASPP
    return model


def min_dynamic(model: nn.Module) -> int:
    """The least height and width a dynamic export accepts (`model`'s output stride + 1)."""
    return model_config(model).output_stride + 1


def dynamic_shapes(model: nn.Module, max_size: tuple[int, int]) -> tuple[dict[int, Any], ...]:
    """``torch.export`` dynamic shapes of the one input: height and width free from `min_dynamic` to `max_size`
    (batch stays 1: the segmenters run a batch one image at a time)."""
    from torch.export import Dim

    low = min_dynamic(model)
    return ({2: Dim("height", min=low, max=max_size[0]), 3: Dim("width", min=low, max=max_size[1])},)


def export_program(
    model: nn.Module, input_size: tuple[int, int], *, dynamic: bool, max_size: tuple[int, int] | None = None
) -> torch.export.ExportedProgram:
    """`model` (already a `graph_copy`) through ``torch.export`` at batch 1 and `input_size`; with `dynamic`, height
    and width free up to `max_size` (default: `input_size`)."""
    config = model_config(model)
    example = torch.randn(1, config.in_chans, *input_size)
    shapes = dynamic_shapes(model, max_size or input_size) if dynamic else None
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=shapes)


def check_max_size(max_size: Any, input_size: tuple[int, int], minimum: int) -> tuple[int, int]:
    """`max_size` (an int or (h, w); None: `input_size`) as a pair no smaller than `input_size`."""
    if max_size is None:
        return input_size
    pair = check_pair("max_size", max_size, minimum)
    if pair[0] < input_size[0] or pair[1] < input_size[1]:
        raise ValueError(
            f"{arg('max_size', pair)} is smaller than {arg('input_size', input_size)}: the example input must fit; "
            "raise the largest size or lower the example's"
        )
    return pair
