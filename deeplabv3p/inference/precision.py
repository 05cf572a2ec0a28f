"""``dtype="auto"``: the fastest precision this device runs natively.

Reduced precision only pays where the hardware computes it: bf16 autocast on a CPU without bf16 instructions
(AVX2 only, or AVX-512 without BF16) converts every tensor to emulate it and runs slower than float32. So:

- CPU: bfloat16 where the CPU has AVX512-BF16 or AMX (and oneDNN is not capped below them with
  ``ONEDNN_MAX_CPU_ISA``), float32 elsewhere;
- CUDA: bfloat16 on GPUs with native bf16 (compute capability 8.0 and newer), float16 on older ones;
- anything else: float32.

`resolve_dtype` turns ``"auto"`` into one of them and logs the choice (logger ``deeplabv3p``); `emulated` says
why a reduced precision the device only emulates is refused (predict's float16 on the CPU, and every precision
``fit(amp=...)`` would emulate), with its measured cost.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger("deeplabv3p")

AUTO = "auto"
# The reduced precisions by name (`PredictOptions.dtype` takes a name or the dtype).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) that keep its bf16 instructions available.
_BF16_ISAS = (
    "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
    "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT",
)  # fmt: skip


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _onednn_isa_cap() -> str | None:
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name)
        if value:
            return value.strip().upper()
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16) and oneDNN may use it."""
    cap = _onednn_isa_cap()
    if cap is not None and cap not in _BF16_ISAS:
        return False
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)  # type: ignore[misc]
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_dtype(device: torch.device) -> torch.dtype:
    """The reduced precision `device` runs natively, or float32 where it has none (see the module docstring)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, _ = torch.cuda.get_device_capability(index)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32


# Measured on a 2-core AVX2 CPU (no AVX512-BF16 or AMX) with a ResNet-18 model (issue 21): seconds per training step.
EMULATION_COST = "a training step took 8.5 s under bf16 and 9.9 s under fp16 against 0.41 s in float32 (21-24x)"


def emulated(dtype: torch.dtype, device: torch.device) -> str | None:
    """Why `device` only emulates the reduced precision `dtype` (a sentence naming the device and the measured
    cost), or None where it computes `dtype` natively (or `dtype` is float32)."""
    if dtype == torch.float32:
        return None
    cost = f"emulated precision is slow: on a CPU without native support {EMULATION_COST}"
    if device.type == "cpu" and dtype == torch.float16:
        return f"float16 needs a GPU: {describe_device(device)} has no fast float16 kernels ({cost})"
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return f"{describe_device(device)} has no native bfloat16 (AVX512-BF16 or AMX) ({cost})"
    if device.type == "cuda" and dtype == torch.bfloat16 and native_dtype(device) != torch.bfloat16:
        return f"{describe_device(device)} has no native bfloat16 (compute capability 8.0 and newer have it)"
    return None


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `dtype` (a dtype, its name or ``"auto"``) on `device`: None (full precision) for None
    or float32, ``"auto"`` resolved with `native_dtype` (and logged), reduced dtypes as given. float16 on the CPU
    is refused: it has no fast kernels there."""
    if isinstance(dtype, str) and dtype != AUTO:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, 'auto', a torch dtype or None; got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype == AUTO:
        chosen = native_dtype(device)
        logger.info("dtype='auto' on %s: %s", describe_device(device), str(chosen).removeprefix("torch."))
        dtype = chosen
    if dtype is None or dtype == torch.float32:
        return None
    if not isinstance(dtype, torch.dtype) or dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {list(DTYPES)}, 'auto', a torch dtype or None; got {dtype!r}")
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError(f"dtype=torch.float16: {emulated(dtype, device)}; use dtype='auto' or float32 on the CPU")
    return dtype


def describe_device(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100, sm_90)`` or ``cpu (avx512_bf16, amx_bf16)``: what `native_dtype` looked at."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"{device} ({torch.cuda.get_device_name(index)}, sm_{major}{minor})"
    if device.type == "cpu":
        flags = sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"))
        cap = _onednn_isa_cap()
        return f"cpu ({', '.join(flags) or 'flags unknown'}{f'; ONEDNN_MAX_CPU_ISA={cap}' if cap else ''})"
    return str(device)
