"""`state_digest`: one fingerprint of a network's weights, for the caches and resumable jobs that must not mix the
results of two sets of weights (`deeplabv3p.deploy` caches exports and runtime decisions by it; a raster
prediction resumes only with the same weights)."""

from __future__ import annotations

import hashlib
import weakref

import torch
from torch import nn

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], str]] = weakref.WeakKeyDictionary()


def state_digest(model: nn.Module) -> str:
    """The sha256 of `model`'s parameters and buffers (names, dtypes, shapes and values, in name order).

    Hashing reads every weight (0.3 s for ResNet-101's 240 MB), so the digest is kept per model until one of its
    tensors is changed in place or replaced.
    """
    state = model.state_dict(keep_vars=True)
    versions = tuple(v for t in state.values() for v in (id(t), t._version))
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    _CACHE[model] = (versions, digest.hexdigest())
    return _CACHE[model][1]
