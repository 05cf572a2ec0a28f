"""`load`: any exported file as a predict backend, its runtime chosen from the file's name."""

from __future__ import annotations

import os
from typing import Any

from .backend import DeployedBackend
from .formats import format_of


def load(path: str | os.PathLike, **kwargs: Any) -> DeployedBackend:
    """The exported model at `path` (``.onnx``, ``.xml``, ``.pte``, ...) as a backend with ``.predict``.

    `kwargs` go to the format's segmenter (e.g. ``threads=2``). Raises ImportError naming the extra when the
    runtime is missing, and ValueError for a format that cannot run here (Core ML on Linux).
    """
    fmt = format_of(os.fspath(path))
    loader = fmt.load_function()
    fmt.require_run()
    backend: DeployedBackend = loader(path, **kwargs)
    return backend
