"""GPU numbers in one shot: the seed table's fps and memory, measured the first time a GPU is lent (issue 22).

One command (``bash benchmarks/gpu.sh``, which installs the checkout and runs this) on a CUDA machine without
network, within a time budget (8 minutes by default), in order of value, saving the results after every step so that
a run cut short keeps its numbers:

1. the GPU tests (``pytest -m gpu``) and their summary;
2. inference of the seven architectures at 1024x2048 (where the seed's fps was measured), batch 1: fp32 eager and
   fp16 (BatchNorm folded, channels_last, autocast), each beside the seed's fps;
3. a training step per architecture (forward + backward + SGD, AMP: fp16 with a GradScaler) at batch 2 and the
   seed's crop size, its peak memory against the seed's "Mem (GB)";
4. the compiled path (``torch.compile``) of R-50-D8, and R-50-D8 as a TensorRT fp16 engine (issue 19's target:
   >= 2x our fp16 eager path, labels >= 99.5% equal; where the ``tensorrt`` package is installed);
5. folder prediction with R-18-D8 at 1024x2048: today's one-at-a-time loop against reading workers and batching;
6. while time is left: bf16 inference, mmseg's own models (where installed) for inference and training, and our
   fp32 training step.

Everything else is `benchmarks/run.py`'s: one fresh worker process per case (`benchmarks.worker`), the same timing
and peak memory (`benchmarks.timing`), the same report (`benchmarks.report`, which adds the table against the seed).
``--dry-run`` runs the same plan at tiny sizes for one architecture, in this process, with the tests step on
``tests/train/test_trainer_cuda.py`` only: the CPU check, in the test suite, that keeps this script working between
GPU visits.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import adapters, report, run  # noqa: E402
from benchmarks.worker import Case  # noqa: E402

Size = tuple[int, int]


@dataclass(frozen=True)
class Preset:
    """What the GPU run measures and how long it may take over each part."""

    models: tuple[str, ...]
    infer_size: Size | None  # inference (and the check images); None: each model's seed crop
    crop: Size | None  # the training step's size; None: each model's seed crop
    warmup: int
    runs: int
    train_warmup: int
    train_runs: int
    train_steps: int  # steps of training of the benchmark network (benchmarks.inputs), cached per architecture
    compile_models: tuple[str, ...]
    tensorrt_models: tuple[str, ...]  # as TensorRT fp16 engines (with --compare tensorrt, where it is installed)
    folder_model: str
    folder_size: Size
    folder_images: int
    folder_configs: tuple[tuple[int, int], ...]  # (reading workers, batch) besides today's loop
    folder_resize: bool  # False: the folder's images at their own size, not the weights' test scale
    test_paths: tuple[str, ...]
    tests_timeout_s: float


FULL = Preset(
    models=run.MMSEG_ARCHITECTURES,
    infer_size=report.SEED_FPS_SIZE,
    crop=None,
    warmup=5,
    runs=20,
    train_warmup=3,
    train_runs=5,
    train_steps=200,  # run.py's 300 would take a minute of the budget over the seven: fp16 agrees either way
    compile_models=("deeplabv3plus_r50_d8",),
    tensorrt_models=("deeplabv3plus_r50_d8",),
    folder_model="deeplabv3plus_r18_d8",
    folder_size=(1024, 2048),
    folder_images=8,
    folder_configs=((0, 4), (4, 4)),
    folder_resize=True,
    test_paths=("tests",),
    tests_timeout_s=150,
)
DRY_RUN = replace(
    FULL,
    models=("deeplabv3plus_r18_d8",),
    infer_size=(32, 64),
    crop=(32, 64),
    warmup=0,
    runs=1,
    train_warmup=0,
    train_runs=1,
    train_steps=0,  # random weights: the plumbing, not the numbers
    folder_size=(32, 64),
    folder_images=2,
    folder_configs=((1, 2),),
    folder_resize=False,
    test_paths=("tests/train/test_trainer_cuda.py",),
    tests_timeout_s=120,
)


def plan(preset: Preset, device: str, peers: tuple[str, ...], workdir: Path) -> list[Case]:
    """Every case, in order of value (the module docstring's steps 2 to 6)."""
    reduced = "fp16" if device == "cuda" else "bf16"  # fp16 has no fast CPU kernels: a CPU dry run uses bf16
    common: dict[str, Any] = dict(device=device, workdir=str(workdir), train_steps=preset.train_steps)

    def crop(arch: str) -> Size:
        h, w = adapters.seed_cfg(arch).crop_size or (512, 1024)  # every seed row has its crop
        return h, w

    def infer(arch: str, library: str, dtype: str, **kw: Any) -> Case:
        size = preset.infer_size or crop(arch)
        return Case(task="infer", library=library, architecture=arch, size=size, dtype=dtype, batches=(1,),
                    warmup=preset.warmup, runs=preset.runs, **common, **kw)  # fmt: skip

    def train(arch: str, library: str, dtype: str) -> Case:
        return Case(task="train", library=library, architecture=arch, size=preset.crop or crop(arch), dtype=dtype,
                    batches=(2,), warmup=preset.train_warmup, runs=preset.train_runs, **common)  # fmt: skip

    cases = []
    for arch in preset.models:
        size = preset.infer_size or crop(arch)
        cases += [Case(task="prepare", library="ours", architecture=arch, size=size, **common)]
        cases += [infer(arch, "ours", "fp32")]
        if device == "cuda":
            cases += [infer(arch, "ours", "fp16", optimize=True)]
    cases += [train(arch, "ours", reduced) for arch in preset.models]
    cases += [infer(a, "ours", reduced, optimize=True, compile=True) for a in preset.compile_models
              if a in preset.models]  # fmt: skip
    if device == "cuda" and "tensorrt" in peers:
        cases += [infer(a, "tensorrt", "fp16") for a in preset.tensorrt_models if a in preset.models]
    arch = preset.folder_model if preset.folder_model in preset.models else preset.models[0]
    folder: dict[str, Any] = dict(task="folder", library="ours", architecture=arch, dtype="auto", optimize=True,
                                  size=preset.infer_size or crop(arch), predict_size=preset.folder_size,
                                  **common)  # fmt: skip
    images = {"images": preset.folder_images, "resize": preset.folder_resize}
    cases += [Case(**folder, extra={**images, "pipeline": False})]
    cases += [Case(**folder, extra={**images, "pipeline": True, "workers": w, "batch": b})
              for w, b in preset.folder_configs]  # fmt: skip
    for arch in preset.models:
        cases += [infer(arch, "ours", "bf16", optimize=True)]
        if "mmseg" in peers:
            cases += [infer(arch, "mmseg", "fp32")]
    for arch in preset.models:
        cases += [train(arch, "ours", "fp32")]
        if "mmseg" in peers:
            cases += [train(arch, "mmseg", "fp32")]
    return cases


_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)")
_VERDICT = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", re.M)


def run_tests(paths: tuple[str, ...], timeout: float, log: Path, env: dict[str, str]) -> dict[str, Any]:
    """``pytest -m gpu`` over `paths` in a fresh process: its summary line, counts and failures; the whole output
    goes to `log`. Stopped after `timeout` seconds: then the counts are those of the tests that finished, and
    ``stopped_in`` names the one that was running."""
    # --continue-on-collection-errors: a test module that fails to import stops no GPU test
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfE", "--tb=short", "--durations=10",
           "--continue-on-collection-errors", "-p", "no:cacheprovider", *paths]  # fmt: skip
    started = time.time()
    code, stdout, stderr = run.run_process(cmd, env, max(timeout, 1))
    output = stdout + stderr + ("" if code is not None else f"\nstopped after {timeout:.0f} s\n")
    report.write_atomic(log, output)
    lines = [line.strip("= ") for line in output.splitlines() if line.strip()]
    verdicts = _VERDICT.findall(output)
    result: dict[str, Any] = {"command": "pytest -m gpu " + " ".join(paths), "returncode": code, "log": log.name}
    if code is None:
        running = [line.split()[0] for line in stdout.splitlines() if "::" in line and not _VERDICT.match(line)]
        counts: dict[str, int] = {}
        for _, verdict in verdicts:
            counts[verdict.lower()] = counts.get(verdict.lower(), 0) + 1
        summary = f"stopped after {timeout:.0f} s (the tests' share of the time budget): " + (
            ", ".join(f"{n} {word}" for word, n in counts.items()) or "no test finished"
        )
        result.update(stopped_in=running[-1] if running else None)
        failures = [f"{verdict} {node}" for node, verdict in verdicts if verdict in ("FAILED", "ERROR")]
    else:
        summary = next((line for line in reversed(lines) if _COUNTS.search(line)), lines[-1] if lines else "no output")
        counts = {word.rstrip("s") if word.startswith(("error", "warning")) else word: int(n)
                  for n, word in _COUNTS.findall(summary)}  # fmt: skip
        failures = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    result.update(summary=summary, counts=counts, failures=failures[:30], seconds=time.time() - started)
    return result


def driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi`` (or NVML), None where neither answers."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        import pynvml  # type: ignore[import-not-found]  # nvidia-ml-py

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return None


def gpu_stamp(device: str) -> dict[str, Any]:
    """GPU model, compute capability, memory, driver, CUDA, cuDNN and torch versions (GPU fields None on the CPU)."""
    import torch

    stamp: dict[str, Any] = {"name": None, "capability": None, "memory_gib": None, "multiprocessors": None,
                             "driver": None, "cuda": torch.version.cuda,
                             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                             "torch": torch.__version__}  # fmt: skip
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        stamp.update(
            name=props.name,
            capability=f"sm_{props.major}{props.minor}",
            memory_gib=props.total_memory / 2**30,
            multiprocessors=props.multi_processor_count,
            driver=driver_version(),
        )
    return stamp


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda; cpu only with --dry-run")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, one architecture, cases in this process")
    p.add_argument("--models", default=None, help="comma-separated architectures (default: the seven; dry run: r18)")
    p.add_argument(
        "--compare", default="mmseg,tensorrt", help="beside ours where installed: mmseg, tensorrt, both or none"
    )
    p.add_argument("--budget-s", type=float, default=480, help="wall-clock seconds for the whole run (default 480)")
    p.add_argument("--no-tests", action="store_true", help="skip the pytest -m gpu step")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    p.add_argument("--name", default=None, help="results file stem (default: gpu_<GPU>_<date>)")
    p.add_argument("--workdir", type=Path, default=Path("benchmarks", "scratch", "work"), help="benchmark cache")
    return p


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    import torch

    device = args.device or "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print(
            "no CUDA device here: the GPU preset measures a GPU (--device cpu --dry-run checks the script)",
            file=sys.stderr,
        )
        return 2
    if device == "cpu" and not args.dry_run:
        print("--device cpu is for --dry-run: the GPU preset's numbers need a GPU", file=sys.stderr)
        return 2
    preset = DRY_RUN if args.dry_run else FULL
    if args.models:
        preset = replace(preset, models=tuple(args.models.split(",")))
    for arch in preset.models:
        adapters.seed_cfg(arch)  # a clear error for unknown names before anything runs
    try:
        wanted = run._names(args.compare, ("mmseg", "tensorrt"), "peer")
    except argparse.ArgumentTypeError as e:
        print(e, file=sys.stderr)
        return 2
    notes = [adapters.available(p)[1] for p in wanted if not adapters.available(p)[0]]
    peers = tuple(p for p in wanted if adapters.available(p)[0])
    args.out.mkdir(parents=True, exist_ok=True)
    (ROOT / args.workdir).mkdir(parents=True, exist_ok=True)  # workers run in ROOT: relative paths start there

    reduced = "fp16" if device == "cuda" else "bf16"
    command = "bash benchmarks/gpu.sh " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    meta = run.make_meta(device, 0, reduced, list(preset.models), preset.warmup, preset.runs, command, notes)
    meta.update(
        preset="gpu, dry run" if args.dry_run else "gpu",
        budget_s=args.budget_s,
        gpu=gpu_stamp(device),
        seed={arch: adapters.seed_cfg(arch).metrics for arch in preset.models},
    )
    for note in notes:
        print(note, flush=True)
    where = _slug(meta["gpu"]["name"] or device)
    name = args.name or run.free_name(args.out, f"{'dry-run' if args.dry_run else 'gpu'}_{where}_{meta['date'][:10]}")
    results: dict[str, Any] = {"meta": meta, "cases": []}

    def save(r: dict) -> str:
        return run.save_results(r, args.out, name)

    save(results)
    deadline = started + args.budget_s
    env = run.worker_env()
    if not args.no_tests:
        timeout = min(preset.tests_timeout_s, deadline - time.time())
        results["tests"] = run_tests(preset.test_paths, timeout, args.out / f"{name}_pytest.log", env)
        print(f"[{results['tests']['seconds']:6.0f} s] {results['tests']['command']}: {results['tests']['summary']}")
        save(results)
    run.run_cases(plan(preset, device, peers, args.workdir), env, results, save, deadline, in_process=args.dry_run)
    print(save(results))
    print(f"\nwrote {args.out / name}.json and .md in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
