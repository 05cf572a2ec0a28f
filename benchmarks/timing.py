"""Timing and peak-memory measurement, the same way for every library.

GPU: CUDA events around each call (queued back to back, one synchronisation at the end), peak memory as
``torch.cuda.max_memory_allocated`` since a reset. CPU: ``time.perf_counter`` around each call, peak memory as the
process's peak resident set size since a reset (Linux ``/proc/self/clear_refs``; ``ru_maxrss`` where that is
unavailable, which then counts from the process start). Every call gets the next input of a pool of distinct
tensors larger than the last-level cache, so no call reuses a warm input.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

POOL_BYTES = 96 * 2**20  # inputs cycled per measurement: more than any L3 cache the benchmarks run on
MAX_POOL = 16


@dataclass(frozen=True)
class Stats:
    """Summary of per-call times in seconds."""

    runs: int
    median_s: float
    p90_s: float
    mean_s: float
    min_s: float

    @classmethod
    def of(cls, times: Sequence[float]) -> Stats:
        if not times:
            raise ValueError("no timings to summarise")
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        return cls(len(ordered), statistics.median(ordered), p90, statistics.fmean(ordered), ordered[0])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool_size(example_bytes: int) -> int:
    """How many distinct inputs to cycle so that together they exceed `POOL_BYTES` (at least 2, at most 16)."""
    return max(2, min(MAX_POOL, math.ceil(POOL_BYTES / max(example_bytes, 1))))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[Any], Any], inputs: Sequence[Any], warmup: int, runs: int, device: torch.device
) -> tuple[list[float], float]:
    """Call ``fn`` on the inputs in turn: `warmup` untimed calls, then `runs` timed ones.

    Returns the per-call times (seconds) and the time of the first warm-up call (which includes any compilation).
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    first = 0.0
    for i in range(warmup):
        start = time.perf_counter()
        fn(inputs[i % len(inputs)])
        synchronize(device)
        if i == 0:
            first = time.perf_counter() - start
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
        for i, (begin, end) in enumerate(events):
            begin.record()
            fn(inputs[(warmup + i) % len(inputs)])
            end.record()
        torch.cuda.synchronize(device)
        return [begin.elapsed_time(end) / 1000.0 for begin, end in events], first
    times = []
    for i in range(runs):
        x = inputs[(warmup + i) % len(inputs)]
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times, first


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window. Returns False where the CPU peak cannot be reset (it then counts from start)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM) of this process
        return True
    except OSError:
        return False


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory since the last `reset_peak_memory`: CUDA max allocated, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_memory_bytes(device: torch.device) -> int:
    """Memory in use now: CUDA allocated, or the process's resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    rss = _status_kib("VmRSS")
    return (rss or 0) * 1024


def timed_peak(device: torch.device, run: Callable[[], object]) -> tuple[float, int]:
    """Seconds and peak memory in bytes (`peak_memory_bytes`) of one call of `run`, in a fresh peak window."""
    reset_peak_memory(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start, peak_memory_bytes(device)
