"""The proof that an export segments as PyTorch does: logits and labels of the exported network against the eager
fp32 model on the same network inputs, and both speeds.

Bounds (documented in the README): a full-precision export must agree on >= 99.9% of labels with a largest logit
difference <= 1e-3 of the largest logit (`FP32`); an INT8 export on >= 99.5% of labels (`INT8`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..inference.backend import Backend
from ..inference.labels import class_indices
from .bounds import FP32, INT8, Bounds

__all__ = ["FP32", "INT8", "Agreement", "Bounds", "ExportCheckError", "compare", "reference_logits", "synthetic_inputs"]


class ExportCheckError(ValueError):
    """An export that does not segment as the PyTorch model does (nothing was published)."""


@dataclass(frozen=True)
class Agreement:
    """How an exported network's outputs compare with eager fp32 PyTorch on the same inputs."""

    size: tuple[int, int]
    inputs: int
    max_abs_diff: float
    max_abs_logit: float
    label_agreement: float
    seconds: float  # the export's mean time per input, the first (warm-up) call left out when there are several
    reference_seconds: float  # eager PyTorch fp32's (0 when the caller passed the reference logits)

    @property
    def rel_diff(self) -> float:
        """max |export - eager| relative to max |eager logit|."""
        return self.max_abs_diff / max(self.max_abs_logit, 1e-12)

    def within(self, bounds: Bounds) -> bool:
        return self.label_agreement >= bounds.labels and (bounds.rtol is None or self.rel_diff <= bounds.rtol)

    def describe(self, name: str) -> str:
        speed = (
            f" ({self.reference_seconds / max(self.seconds, 1e-12):.2f}x PyTorch eager)"
            if self.reference_seconds
            else ""
        )
        return (
            f"{name} vs PyTorch fp32 at {self.size[0]}x{self.size[1]} (HxW), {self.inputs} input(s): labels "
            f"{100 * self.label_agreement:.3f}% equal, max logit difference {self.rel_diff:.2e} of the largest "
            f"logit; {1000 * self.seconds:.1f} ms per input{speed}"
        )


def synthetic_inputs(in_chans: int, size: Sequence[int], count: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """`count` fixed pseudo-random network inputs ``(1, C, H, W)`` (normalized space, so N(0, 1))."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, in_chans, int(size[0]), int(size[1]), generator=generator) for _ in range(count)]


def compare(
    model: nn.Module,
    backend: Backend,
    inputs: Iterable[torch.Tensor],
    expected: Sequence[torch.Tensor] | None = None,
) -> Agreement:
    """Run `backend` and an fp32 CPU copy of `model` on the same network inputs (all of one size) and compare.

    `expected`: the eager fp32 logits of `inputs`, when the caller has them already (`reference_logits`), so that
    comparing several backends runs the model once; the reference time is then 0."""
    eager = copy.deepcopy(model).float().cpu().eval() if expected is None else None
    max_diff = max_logit = 0.0
    same = total = count = 0
    times: list[tuple[float, float]] = []  # (export, reference) seconds per input
    size: tuple[int, int] | None = None
    for x in inputs:
        if size is not None and tuple(x.shape[-2:]) != size:
            raise ValueError(f"compare takes inputs of one size, got {size} and {tuple(x.shape[-2:])}")
        size = (int(x.shape[-2]), int(x.shape[-1]))
        with torch.inference_mode():
            start = time.perf_counter()
            reference = eager(x) if eager is not None else expected[count]  # type: ignore[index]
            middle = time.perf_counter()
            got = backend(x).float().cpu()
            times.append((time.perf_counter() - middle, middle - start))
        if got.shape != reference.shape:
            raise ExportCheckError(
                f"the export gives logits of shape {tuple(got.shape)} for input {tuple(x.shape)}, PyTorch gives "
                f"{tuple(reference.shape)}"
            )
        max_diff = max(max_diff, (got - reference).abs().max().item())
        max_logit = max(max_logit, reference.abs().max().item())
        same += int((class_indices(got, 1) == class_indices(reference, 1)).sum())
        total += reference.shape[0] * reference.shape[2] * reference.shape[3]
        count += 1
    if size is None:
        raise ValueError("compare needs at least one input")
    warm = times[1:] or times  # the first call of each warms caches and JIT-compiles kernels: not its speed
    seconds, reference_seconds = (sum(t[i] for t in warm) / len(warm) for i in (0, 1))
    return Agreement(size, count, max_diff, max_logit, same / total, seconds, reference_seconds)


def reference_logits(model: nn.Module, inputs: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The eager fp32 CPU logits of `model` on each input: `compare`'s ``expected``."""
    eager = copy.deepcopy(model).float().cpu().eval()
    with torch.inference_mode():
        return [eager(x) for x in inputs]
