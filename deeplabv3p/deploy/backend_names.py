"""The names of the backends `deeplabv3p.deploy.fastest` times and ``predict --backend`` takes, without torch (so
that ``--help`` stays fast): the PyTorch paths, then every deployment format that runs on a CPU (`FORMATS`)."""

from __future__ import annotations

from collections.abc import Sequence

from .formats import FORMATS, Format

EAGER = "pytorch"  # the model as it is, fp32: the reference every other backend is compared with
FOLDED = "pytorch-folded"  # optimize_for_inference(): BatchNorm folded, channels_last weights, fp32
NATIVE_BF16 = "pytorch-bf16"  # optimize_for_inference(dtype="auto") where the CPU computes bf16 natively
PYTORCH_BACKENDS = (EAGER, FOLDED, NATIVE_BF16)
AUTO = "auto"


def runnable_formats() -> list[Format]:
    """The deployment formats whose exports run on a CPU here (installed or not), in `FORMATS` order."""
    return [f for f in FORMATS.values() if f.runs_on_cpu and f.loader is not None]


def backend_names() -> list[str]:
    """What ``predict --backend`` accepts besides ``auto``: the PyTorch paths and the runnable formats."""
    return [*PYTORCH_BACKENDS, *(f.name for f in runnable_formats())]


def check_formats(formats: Sequence[str] | None) -> list[str]:
    """`formats` (None for all, or names of runnable formats) as a list of format names; a ValueError naming the
    bad entry and the choices otherwise."""
    runnable = [f.name for f in runnable_formats()]
    if formats is None:
        return runnable
    if not isinstance(formats, list | tuple) or not all(isinstance(name, str) for name in formats):
        raise ValueError(f"formats must be a list of format names such as ['onnx'], got {formats!r}")
    names = list(formats)
    for name in names:
        if name not in runnable:
            why = "cannot run on this machine" if name in FORMATS else "is not a deployment format"
            raise ValueError(f"formats: {name!r} {why}; choose among {runnable} (or None for all of them)")
    return list(dict.fromkeys(names))
