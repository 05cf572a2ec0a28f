"""Class labels from scores: the index of the largest score along the class axis, the first one on ties (as
``argmax``).

Why not ``Tensor.argmax``: on the CPU, torch's argmax over an axis that is not the innermost runs about 6x slower
than ``max`` over the same axis (0.54 s against 0.10 s for 19 classes at 1024x2048, 2 threads, torch 2.14), and
``max(dim).indices`` is the same index, first maximum on ties and NaN counted as the largest, as argmax documents.
"""

from __future__ import annotations

import torch


def class_indices(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """The int64 index of the largest score along `dim` (the first on ties): ``scores.argmax(dim)``, faster."""
    return scores.max(dim=dim).indices
