"""`state_digest`: one fingerprint of a network's weights, for the caches and resumable jobs that must not mix the
results of two sets of weights (`deeplabv3p.deploy` caches exports and runtime decisions by it; a raster
prediction resumes only with the same weights)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import nn

_ONCE: ContextVar[dict[int, tuple[nn.Module, str]] | None] = ContextVar("deeplabv3p_digest_once", default=None)


def state_digest(model: nn.Module) -> str:
    """The sha256 of `model`'s parameters and buffers (names, dtypes, shapes and values, in name order).

    It reads every weight each time (0.3 s for ResNet-101's 240 MB): nothing cheaper sees every way weights change
    (``tensor.data`` writes leave no trace in a tensor's version counter). Inside `digest_once` a model is hashed
    once.
    """
    once = _ONCE.get()
    if once is not None and id(model) in once and once[id(model)][0] is model:
        return once[id(model)][1]
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if once is not None:
        once[id(model)] = (model, digest.hexdigest())
    return digest.hexdigest()


@contextlib.contextmanager
def digest_once() -> Iterator[None]:
    """Hash each model once within the block: for one call that asks many times while its weights cannot change
    (a folder of rasters, each job keyed on the weights)."""
    token = _ONCE.set({})
    try:
        yield
    finally:
        _ONCE.reset(token)
