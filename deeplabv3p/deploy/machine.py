"""What a measured speed depends on besides the model: this CPU, its instruction-set caps and the thread budget.

`machine_record` is part of the key of a cached `deeplabv3p.deploy.fastest` decision: a decision measured on one
CPU model, flag set, oneDNN/ATen ISA cap, thread count or PyTorch version is not reused under another.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..inference.precision import cpu_flags

# Environment variables that cap the instruction sets PyTorch uses (benchmarks/run.py --cpu-isa sets them).
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_record(threads: int) -> dict[str, Any]:
    """This machine as timings see it: CPU model, a hash of its feature flags, ISA caps, threads, torch version."""
    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16]
    caps = {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}
    return {"cpu": cpu_model(), "flags_sha256": flags, "isa_caps": caps, "threads": threads, "torch": torch.__version__}
