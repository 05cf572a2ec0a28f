"""`fastest`: the quickest way to run a model on this machine, among PyTorch's paths and every installed runtime,
kept only if it segments as PyTorch fp32 does.

    segmenter, table = deeplabv3p.deploy.fastest(model, (512, 1024), threads=2)
    print(table)                      # name, ms, speed-up vs eager, labels agreement, kept or why not
    segmenter.predict("street.png")   # a DeepLabV3Plus or an exported file's backend

Candidates: fp32 eager PyTorch (the reference), the folded model (`optimize_for_inference`), the bf16 one where
the CPU computes bf16 natively (AVX512-BF16/AMX), and every deployment format that runs on a CPU and whose runtime
is installed, exported (dynamic shapes) into the cache. Each is timed at the input size (warm-up calls, then the
median of `runs` calls) and compared with eager fp32 (`proof.compare`) at the input size and at a second, odd
size; only those within the bounds (default `proof.FP32`: >= 99.9% labels, logits within 1e-3) are kept, and the
fastest of them is chosen. The decision is cached per machine, thread count, model and size (`backend_cache`),
so the next call measures nothing. This is the deploy layer's; the inference layer's `predict` never calls it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from ..fields import check_bool, check_int, check_pair
from ..inference.backend import as_backend
from ..inference.precision import cpu_has_native_bf16
from . import backend_cache
from .backend import DeployedBackend
from .backend_names import EAGER, FOLDED, NATIVE_BF16, PYTORCH_BACKENDS, backend_names, check_formats
from .backend_table import BackendRow, BackendTable
from .exporter import check_sizes, export
from .formats import Format, get_format
from .machine import cpu_model
from .metadata import model_config
from .proof import FP32, Agreement, Bounds, ExportCheckError, compare, reference_logits, synthetic_inputs

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus

Segmenter = Union["DeepLabV3Plus", DeployedBackend]


def time_calls(call: Callable[[torch.Tensor], Any], x: torch.Tensor, warmup: int, runs: int) -> float:
    """Median seconds of `runs` calls of ``call(x)`` after `warmup` untimed ones."""
    for _ in range(warmup):
        call(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def thread_budget(threads: int) -> Iterator[None]:
    """PyTorch's intra-op thread count set to `threads` for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pytorch(model: DeepLabV3Plus, name: str) -> Segmenter:
    if name == EAGER:
        return model
    if name == FOLDED:
        return model.optimize_for_inference()
    return model.optimize_for_inference(dtype="auto")  # NATIVE_BF16: only offered where the CPU has it


class _NotACandidateError(Exception):
    """A backend that cannot serve predict at all (not a failure of this model): its row says why."""


def _exported(model: DeepLabV3Plus, fmt: Format, folder: Path, size: tuple[int, int], threads: int) -> Segmenter:
    """`model` in format `fmt` from the cache (exported there, with dynamic shapes, when missing), loaded."""
    if fmt.fixed_size is not None:
        raise _NotACandidateError(f"fixed size only ({fmt.fixed_size}): a backend for predict takes every input size")
    fmt.require_export()
    fmt.require_run()
    path = folder / f"model{fmt.suffix}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        export(model, path, fmt.name, input_size=size, dynamic=True, check=False)  # proven below, by the caller
    loader = fmt.load_function()
    parameters = inspect.signature(loader).parameters.values()
    takes_threads = any(p.name == "threads" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    segmenter: DeployedBackend = loader(path, threads=threads) if takes_threads else loader(path)
    return segmenter


def _build(model: DeepLabV3Plus, name: str, folder: Path, size: tuple[int, int], threads: int) -> Segmenter:
    if name in PYTORCH_BACKENDS:
        return _pytorch(model, name)
    return _exported(model, get_format(name), folder, size, threads)


class _Proof:
    """Fixed synthetic inputs at the input size and a second, odd size, with eager fp32's logits on them."""

    def __init__(self, model: DeepLabV3Plus, size: tuple[int, int]) -> None:
        config = model_config(model)
        self.model = model
        self.inputs = [
            synthetic_inputs(config.in_chans, at, count=1) for at in check_sizes(size, True, config.output_stride)
        ]
        self.expected = [reference_logits(model, xs) for xs in self.inputs]

    def agreements(self, segmenter: Segmenter) -> list[Agreement]:
        backend = as_backend(segmenter)
        with backend.session():
            return [compare(self.model, backend, xs, e) for xs, e in zip(self.inputs, self.expected)]


def _measure(
    name: str,
    build: Callable[[], Segmenter],
    proof: _Proof,
    bounds: Bounds,
    warmup: int,
    runs: int,
) -> tuple[BackendRow, Segmenter | None]:
    """Build, prove and time one candidate: its row, and the segmenter when it is kept."""
    try:
        segmenter = build()
    except _NotACandidateError as e:
        return BackendRow(name, why=str(e)), None
    except ImportError as e:
        return BackendRow(name, why=f"not installed: {_first_line(e)}"), None
    except Exception as e:  # a runtime that cannot export or load this model is a row, not the end of the search
        return BackendRow(name, why=f"failed: {type(e).__name__}: {_first_line(e)}"), None
    path = str(segmenter.path) if isinstance(segmenter, DeployedBackend) else None
    if isinstance(segmenter, DeployedBackend) and segmenter.static_size is not None:
        h, w = segmenter.static_size
        why = f"static shapes only ({h}x{w}): a backend for predict takes every input size"
        return BackendRow(name, why=why, path=path), None
    try:
        if name == EAGER:
            labels, rel_diff, within = 1.0, 0.0, True
        else:
            agreements = proof.agreements(segmenter)
            labels = min(a.label_agreement for a in agreements)
            rel_diff = max(a.rel_diff for a in agreements)
            within = all(a.within(bounds) for a in agreements)
        backend = as_backend(segmenter)
        with backend.session():
            seconds = time_calls(backend, proof.inputs[0][0], warmup, runs)
    except Exception as e:
        return BackendRow(name, why=f"failed: {type(e).__name__}: {_first_line(e)}", path=path), None
    why = "reference" if name == EAGER else ("" if within else f"outside the bound: {bounds.describe()}")
    row = BackendRow(name, 1000 * seconds, labels, rel_diff, within, why, path)
    return row, segmenter if within else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else "")[:200]


def _still_there(table: BackendTable, folder: Path) -> bool:
    """Whether the chosen backend of a cached decision can be rebuilt as it was measured (its export is there)."""
    if table.chosen in PYTORCH_BACKENDS:
        return True
    try:
        return (folder / f"model{get_format(table.chosen).suffix}").exists()
    except ValueError:  # a format this version no longer has
        return False


def _candidates(formats: list[str]) -> list[str]:
    names = [EAGER, FOLDED] + ([NATIVE_BF16] if cpu_has_native_bf16() else [])
    return names + formats


def _check_model(model: Any) -> None:
    model_config(model)  # a TypeError for anything but a deeplabv3p model
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(
            f"fastest() times CPU runtimes and the model is on {device}: pass model.cpu() (a GPU runs PyTorch, "
            "or a TensorRT export, without this choice)"
        )


def fastest(
    model: DeepLabV3Plus,
    input_size: Sequence[int] = (512, 512),
    *,
    formats: Sequence[str] | None = None,
    threads: int | None = None,
    cache: bool = True,
    bounds: Bounds = FP32,
    warmup: int = 1,
    runs: int = 3,
    cache_root: str | Path | None = None,
) -> tuple[Segmenter, BackendTable]:
    """The fastest backend for `model` on this machine, among those that segment as PyTorch fp32 does.

    Args:
        model: a deeplabv3p model on the CPU (not modified).
        input_size: (height, width) of the network inputs to time: the size predict feeds the network (the
            weights' slide window, or the images after the test rescale).
        formats: deployment formats to consider (default: every format that runs on a CPU; those whose runtime
            is not installed are listed as such). PyTorch eager, folded and (with native bf16) bf16 always are.
        threads: the thread budget to time under (default: torch's current thread count): PyTorch runs with it
            while timing, and exported runtimes are loaded with it. Predict under the same thread count.
        cache: reuse a decision measured earlier for the same model, size, machine and threads (and store this
            one); False measures again (exports in the cache are still reused).
        bounds: the agreement a backend must reach with eager fp32 at two sizes to be kept (default FP32).
        warmup, runs: untimed and timed calls per backend; the median of the timed ones counts.
        cache_root: the cache folder (default ``$DEEPLABV3P_CACHE``, see `deeplabv3p.pretrained.fetch.cache_dir`).

    Returns:
        ``(segmenter, table)``: the chosen backend, with ``.predict`` (the model itself for eager PyTorch, an
        optimized copy for the folded paths, an exported file's `DeployedBackend` otherwise), and the
        `BackendTable` of every candidate (``print(table)``).
    """
    _check_model(model)
    config = model_config(model)
    size = check_pair("input_size", input_size, config.output_stride)
    threads = torch.get_num_threads() if threads is None else check_int("threads", threads, 1)
    check_bool("cache", cache)
    check_int("warmup", warmup, 0)
    check_int("runs", runs, 1)
    if not isinstance(bounds, Bounds):
        raise TypeError(f"bounds must be a deeplabv3p.deploy.Bounds such as proof.FP32, got {bounds!r}")
    names = _candidates(check_formats(formats))
    fingerprint = backend_cache.model_fingerprint(model)
    folder = backend_cache.exports_folder(fingerprint, size, Path(cache_root) if cache_root is not None else None)
    key = backend_cache.decision_key(fingerprint, size, threads, names, bounds.describe())
    decision = backend_cache.decision_path(folder, key)
    if cache:
        table = backend_cache.read_decision(decision, key)
        if table is not None and _still_there(table, folder):
            with contextlib.suppress(ImportError, OSError, ValueError):  # a runtime gone: measure again
                return _build(model, table.chosen, folder, size, threads), table
    with thread_budget(threads):
        proof = _Proof(model, size)
        rows: list[BackendRow] = []
        best: tuple[float, str, Segmenter] | None = None
        for name in names:
            build = functools.partial(_build, model, name, folder, size, threads)
            row, segmenter = _measure(name, build, proof, bounds, warmup, runs)
            rows.append(row)
            if segmenter is not None and row.ms is not None and (best is None or row.ms < best[0]):
                best = (row.ms, name, segmenter)
    assert best is not None  # eager PyTorch is always kept
    table = BackendTable(
        rows=tuple(rows),
        chosen=best[1],
        input_size=size,
        threads=threads,
        cpu=cpu_model(),
        bounds=bounds.describe(),
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        key=key,
    )
    if cache:
        backend_cache.write_decision(decision, table)
    return best[2], table


def backend_for(
    model: DeepLabV3Plus,
    name: str,
    input_size: Sequence[int] = (512, 512),
    *,
    threads: int | None = None,
    bounds: Bounds = FP32,
    cache_root: str | Path | None = None,
) -> Segmenter:
    """`model` run by the backend called `name` (``predict --backend NAME``): a PyTorch path, or a deployment
    format exported into the cache (reused there) and proven against eager fp32 at `input_size` and a second
    size; raises `ExportCheckError` when it does not agree within `bounds`. ``"auto"`` is `fastest`."""
    if name == "auto":
        return fastest(model, input_size, threads=threads, bounds=bounds, cache_root=cache_root)[0]
    if name not in backend_names():
        raise ValueError(f"backend={name!r} is not a backend; choose 'auto' or one of {backend_names()}")
    if name == NATIVE_BF16 and not cpu_has_native_bf16():
        raise ValueError(f"backend={name!r} needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has none")
    _check_model(model)
    size = check_pair("input_size", input_size, model_config(model).output_stride)
    threads = torch.get_num_threads() if threads is None else check_int("threads", threads, 1)
    if name in PYTORCH_BACKENDS:
        return _pytorch(model, name)
    fingerprint = backend_cache.model_fingerprint(model)
    folder = backend_cache.exports_folder(fingerprint, size, Path(cache_root) if cache_root is not None else None)
    segmenter = _exported(model, get_format(name), folder, size, threads)
    with thread_budget(threads):
        failed = [a for a in _Proof(model, size).agreements(segmenter) if not a.within(bounds)]
    if failed:
        raise ExportCheckError(
            f"the {name} export does not segment as the PyTorch model does (required: {bounds.describe()}):\n  "
            + "\n  ".join(a.describe(name) for a in failed)
        )
    return segmenter
