"""The optional runtimes behind each deployment format, imported on use with an error that names the extra."""

from __future__ import annotations

import importlib
import types


def require(module: str, extra: str, purpose: str) -> types.ModuleType:
    """Import `module` (e.g. ``"openvino"``) or raise ImportError naming the pip extra that installs it.

    `purpose` completes the sentence "... needs the X package", e.g. ``"OpenVINO export"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{purpose} needs the {module.split('.')[0]!r} package: pip install 'deeplabv3p[{extra}]' ({e})"
        ) from None
