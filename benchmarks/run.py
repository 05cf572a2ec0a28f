"""Benchmark deeplabv3p against mmsegmentation and segmentation_models_pytorch on the same DeepLabV3+.

Measures, per model: inference throughput and latency (median, p90) at batch 1 and a larger batch, peak memory,
agreement of every fast path with fp32 eager (logits and argmax); a training step (forward + backward + SGD) at the
training batch with its time and peak memory (the seed table's "Mem (GB)" column); end-to-end ``predict`` on
full-size images. Each measurement runs in a fresh process (`benchmarks.worker`). Results go to
``benchmarks/results/NAME.json`` and ``NAME.md``, stamped with device, versions, dtype, threads, date and load.

Examples::

    python benchmarks/run.py --models deeplabv3plus_r50_d8 --size 512x1024 --device cuda --dtype bf16 --compile \\
        --compare smp,mmseg
    python benchmarks/run.py --device cpu --size 512x1024 --threads 2
    python benchmarks/run.py --models all --device cuda            # the seven architectures at their seed crop
    python benchmarks/run.py --device cpu --size 512x1024 --threads 2 --compile --tasks infer,folder \
        --reuse benchmarks/results/cpu-2t_r50_d8_512x1024_2026-11-24.json  # peers not installed: their numbers
    python benchmarks/run.py ... --cpu-isa avx2    # PyTorch limited to AVX2 (oneDNN and ATen), as on a Zen 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import adapters, report  # noqa: E402
from benchmarks.worker import RESULT_PREFIX, Case  # noqa: E402

MMSEG_ARCHITECTURES = (
    "deeplabv3plus_r18_d8",
    "deeplabv3plus_r50_d8",
    "deeplabv3plus_r101_d8",
    "deeplabv3plus_r101_d16_mg124",
    "deeplabv3plus_r18b_d8",
    "deeplabv3plus_r50b_d8",
    "deeplabv3plus_r101b_d8",
)
PEERS = ("mmseg", "smp", "onnxruntime")
# What `plan` can run per model: inference, a training step, predict() and folder prediction (write_predictions).
TASKS = ("infer", "train", "predict", "folder")
DEFAULT_TASKS = ("infer", "train", "predict")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW such as 512x1024, got {text!r}") from None
    if min(h, w) < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return h, w


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n and n != "none")
    bad = [n for n in names if n not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad}; choose from {list(allowed)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="deeplabv3plus_r50_d8", help="comma-separated architectures, or 'all' (seven)")
    p.add_argument("--size", type=_size, default=None, help="HxW input size (default: each model's seed crop size)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument(
        "--dtype",
        choices=["bf16", "fp16", "fp32"],
        default=None,
        help="reduced precision of the fast paths (default: bf16 on CPU, fp16 on GPU)",
    )
    p.add_argument("--compile", action="store_true", help="add the torch.compile fast path (ours)")
    p.add_argument("--compare", default=",".join(PEERS), help=f"peers to run, comma-separated, from {list(PEERS)}")
    p.add_argument(
        "--formats",
        default="all",
        help="deployment formats to run as rows of their own on the CPU, comma-separated (default: all: every "
        "format in deeplabv3p.deploy.FORMATS that runs on a CPU and is installed, ONNX aside: it is the onnxruntime "
        "peer); none for no such row",
    )
    p.add_argument(
        "--no-auto",
        action="store_true",
        help="no 'ours fp32 backend=auto' row (CPU): deeplabv3p.deploy.fastest's choice here, measured first "
        "(minutes; cached in --workdir)",
    )
    p.add_argument(
        "--pair-rounds",
        type=int,
        default=6,
        help="CPU: after the rows, time the two paths of each target's speed ratio alternately in one process for "
        "this many rounds (A B, B A, ...), and decide the target by that paired ratio (default 6; 0: the rows' ratio)",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads per worker (default: torch's default)")
    p.add_argument("--batches", type=_ints, default=None, help="inference batch sizes (default: 1,2 CPU; 1,8 GPU)")
    p.add_argument("--train-batch", type=int, default=2, help="training batch (default 2, the seed table's per GPU)")
    p.add_argument(
        "--tasks", type=functools.partial(_names, allowed=TASKS, what="task"), default=DEFAULT_TASKS,
        help=f"comma-separated, any of {','.join(TASKS)} (default: {','.join(DEFAULT_TASKS)})",
    )  # fmt: skip
    p.add_argument("--grad-ckpt", action="store_true", help="also train ours with activation checkpointing")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 2 CPU, 10 GPU)")
    p.add_argument("--runs", type=int, default=None, help="timed calls (default 7 CPU, 50 GPU)")
    p.add_argument("--train-runs", type=int, default=None, help="timed training steps (default 3 CPU, 20 GPU)")
    p.add_argument("--predict-runs", type=int, default=None, help="timed predict calls (default 3 CPU, 10 GPU)")
    p.add_argument("--train-steps", type=int, default=300, help="training steps of the benchmark network (cached)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    p.add_argument(
        "--name",
        default=None,
        help="results file stem (default: device, threads, ISA cap, models, size and date; then _2, _3 ... if taken)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("benchmarks", "scratch", "work"),
        help="cache for benchmark weights, check images and exported models",
    )
    p.add_argument(
        "--wait-load",
        type=float,
        default=None,
        help="wait until the 1-minute load average is below this before starting (shared machines)",
    )
    p.add_argument("--wait-timeout", type=float, default=1800, help="give up waiting after this many seconds")
    p.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="an earlier results JSON: take the mmseg and smp inference rows from it for peers not installed here "
        "(marked reused, with their date)",
    )
    p.add_argument(
        "--cpu-isa",
        choices=["native", "avx2"],
        default="native",
        help="avx2: cap PyTorch at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2), the instruction set "
        "of a CPU without AVX-512 or native bf16 (e.g. AMD Zen 3); onnxruntime is not capped",
    )
    p.add_argument("--folder-images", type=int, default=6, help="full-size images in the folder task (default 6)")
    p.add_argument(
        "--folder-configs",
        default="1x1,0x1,1x2,2x2",
        help="folder task pipelines as WORKERSxBATCH, besides today's loop (default 1x1,0x1,1x2,2x2)",
    )
    return p


@functools.cache
def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpuinfo(field: str) -> str | None:
    return _cpuinfo_fields().get(field)


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The flags that decide the fast paths: bf16/AMX (autocast), VNNI (int8), AVX-512/AVX2/FMA (fp32)."""
    flags = set((_cpuinfo("flags") or "").split())
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx512_vnni", "avx_vnni")))


def cpu_stamp() -> dict:
    """Everything about the CPU the numbers depend on: model, family, flags (the SIMD ones), nominal clock."""
    flags = sorted(f for f in (_cpuinfo("flags") or "").split() if f.startswith(("avx", "amx", "fma", "f16c")))
    mhz = _cpuinfo("cpu MHz")
    return {
        "model": _cpu_name(),
        "vendor": _cpuinfo("vendor_id"),
        "family": _cpuinfo("cpu family"),
        "cpu_model": _cpuinfo("model"),
        "simd_flags": flags,
        "mhz": float(mhz) if mhz else None,
    }


def fp32_flops_per_cycle(stamp: dict) -> int | None:
    """Peak fp32 FLOP per cycle and core: FMA units x lanes x 2. AMD Zen 2-4 have two 256-bit FMA pipes (Zen 4
    runs AVX-512 on them in two halves): 32; Zen 5 and Intel server cores with AVX-512 have two 512-bit ones: 64;
    other AVX2 + FMA cores: 32. None when unknown."""
    flags = set(stamp["simd_flags"])
    if stamp["vendor"] == "AuthenticAMD" and stamp["family"] in ("23", "25"):
        return 32
    if stamp["vendor"] == "AuthenticAMD" and stamp["family"] == "26":
        return 64
    if stamp["vendor"] == "GenuineIntel" and "avx512f" in flags:
        return 64
    return 32 if {"avx2", "fma"} <= flags else None


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    flags = ", ".join(_cpu_flags())
    return f"{_cpu_name()} ({os.cpu_count()} logical CPUs{'; ' + flags if flags else ''})"


def wait_for_quiet(limit: float, timeout: float) -> list[float]:
    """Poll the 1-minute load average once a minute until it is below `limit` or `timeout` passes."""
    deadline = time.time() + timeout
    while os.getloadavg()[0] >= limit and time.time() < deadline:
        print(f"waiting: load average {os.getloadavg()[0]:.2f} >= {limit}", flush=True)
        time.sleep(60)
    return list(os.getloadavg())


def _auto_choice(device: str) -> str:
    """What ``dtype="auto"`` picks here (under this process's environment, which the workers share)."""
    import torch

    from deeplabv3p.inference.precision import native_dtype

    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[native_dtype(torch.device(device))]


def _deploy_formats(text: str, notes: list[str]) -> tuple[str, ...]:
    """The deployment formats of ``--formats`` that are installed here; a note for each one that is not."""
    known = tuple(adapters.deploy_formats())
    names = known if text == "all" else _names(text, known, "deployment format")
    kept = []
    for name in names:
        ok, note = adapters.available(name)
        if ok:
            kept.append(name)
        else:
            notes.append(note)
    return tuple(kept)


def _folder_configs(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(v) for v in part.split("x")) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"folder configs are WORKERSxBATCH,..., got {text!r}") from None
    if any(len(p) != 2 or p[0] < 0 or p[1] < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"folder configs are WORKERSxBATCH with WORKERS >= 0, BATCH >= 1: {text!r}")
    return pairs  # type: ignore[return-value]


def plan(args: argparse.Namespace, models: list[str], peers: tuple[str, ...]) -> list[Case]:
    """Every case to run, in order: prepare, then inference, training, predict and folder prediction per model."""
    cpu = args.device == "cpu"
    dtype = args.dtype
    batches = args.batches or ((1, 2) if cpu else (1, 8))
    tasks = set(args.tasks)
    common = dict(device=args.device, threads=args.threads, workdir=str(args.workdir), train_steps=args.train_steps)
    cases = []
    if cpu and "infer" in tasks:
        cases.append(Case(task="peak", library="ours", architecture=models[0], size=(1, 1), **common))
    auto = _auto_choice(args.device)
    for arch in models:
        size = args.size or tuple(adapters.seed_cfg(arch).crop_size)
        base = dict(common, architecture=arch, size=size)
        cases.append(Case(task="prepare", library="ours", **base))
        if "infer" in tasks:
            infer = dict(base, task="infer", batches=batches, warmup=args.warmup, runs=args.runs)
            cases.append(Case(library="ours", dtype="fp32", **infer))
            cases.append(Case(library="ours", dtype="fp32", optimize=True, **infer))
            cases.append(Case(library="ours", dtype="auto", optimize=True, **infer))
            if dtype not in ("fp32", auto):  # the explicit reduced precision, where auto does not pick it
                cases.append(Case(library="ours", dtype=dtype, optimize=True, **infer))
            if args.compile:
                cases.append(Case(library="ours", dtype="auto", optimize=True, compile=True, **infer))
            for peer in ("mmseg", "smp"):
                if peer in peers:
                    cases.append(Case(library=peer, dtype="fp32", **infer))
                    if dtype != "fp32":
                        cases.append(Case(library=peer, dtype=dtype, channels_last=True, **infer))
            if "onnxruntime" in peers and cpu:
                cases.append(Case(library="onnxruntime", dtype="fp32", **infer))
                cases.append(Case(library="onnxruntime", dtype="int8", **infer))
            if cpu:  # batch 1: what the auto choice is made for, and what every runtime takes
                one = dict(infer, batches=(1,))
                if getattr(args, "auto", True):
                    cases.append(Case(library="ours", dtype="fp32", extra={"backend": "auto"}, **one))
                for fmt in getattr(args, "deploy_formats", ()):
                    cases.append(Case(library=fmt, dtype="fp32", **one))
                    if fmt == "openvino":  # INT8 with NNCF, the accuracy-controlled path
                        cases.append(Case(library=fmt, dtype="int8", **one))
        if "train" in tasks:
            train = dict(base, task="train", batches=(args.train_batch,), warmup=1 if cpu else 3, runs=args.train_runs)
            cases.append(Case(library="ours", dtype="fp32", **train))
            if dtype != "fp32":
                cases.append(Case(library="ours", dtype=dtype, **train))
                if args.grad_ckpt:
                    cases.append(Case(library="ours", dtype=dtype, grad_ckpt=True, **train))
            for peer in ("mmseg", "smp"):
                if peer in peers:
                    cases.append(Case(library=peer, dtype="fp32", **train))
                    if dtype != "fp32" and not cpu:
                        cases.append(Case(library=peer, dtype=dtype, **train))
        if "predict" in tasks:
            predict = dict(base, task="predict", warmup=1, runs=args.predict_runs)
            cases.append(Case(library="ours", dtype="fp32", **predict))
            if dtype != "fp32":
                cases.append(Case(library="ours", dtype=dtype, optimize=True, **predict))
            if "mmseg" in peers:
                cases.append(Case(library="mmseg", dtype="fp32", **predict))
        if "folder" in tasks:
            folder = dict(base, task="folder", library="ours", dtype="auto", optimize=True)
            extra = {"images": args.folder_images}
            cases.append(Case(**folder, extra={**extra, "pipeline": False}))
            for workers, batch in _folder_configs(args.folder_configs):
                cases.append(Case(**folder, extra={**extra, "pipeline": True, "workers": workers, "batch": batch}))
    return cases


def reused_cases(path: Path, libraries: tuple[str, ...], models: list[str], size: tuple[int, int] | None) -> list:
    """The inference rows of `libraries` in an earlier results file, for the same models and size, marked reused.

    Each keeps the throughput of our fp32 eager path in that run (``reused_reference``), so that
    `report.scale_reused` can carry the peer over to this machine's speed."""
    data = json.loads(path.read_text())
    date = data["meta"]["date"]
    kept = []
    for c in data["cases"]:
        case = c["case"]
        same_size = size is None or tuple(case["size"]) == tuple(size)
        if case["task"] == "infer" and case["library"] in libraries and case["architecture"] in models and same_size:
            ours = next(
                (o for o in data["cases"] if o["case"]["task"] == "infer" and o["case"]["library"] == "ours"
                 and o["case"]["dtype"] == "fp32" and not o["case"]["optimize"] and not o["case"]["compile"]
                 and o["case"]["architecture"] == case["architecture"] and "batches" in o),
                None,
            )  # fmt: skip
            reference = {b: e["images_per_s"] for b, e in ours["batches"].items()} if ours else None
            source = f"{path.name} ({date} UTC, {data['meta']['device_name']})"
            kept.append({**c, "reused_from": source, "reused_reference": reference})
    return kept


MIN_CASE_S = 15  # a case is not started with less of the time budget left (a fresh process needs seconds)


def run_case(case: Case, env: dict[str, str], timeout: float | None = None, in_process: bool = False) -> dict:
    """Run one case in a fresh interpreter (or, `in_process`, in this one: a dry run's check of the plumbing, not a
    measurement); its result, or an ``error`` entry with the tail of its output. `timeout`: seconds until the
    worker is stopped."""
    if in_process:
        from benchmarks.worker import measure

        try:
            return json.loads(json.dumps(measure(case)))
        except Exception as e:
            return {"case": json.loads(case.to_json()), "label": case.label, "error": f"{type(e).__name__}: {e}"[-300:]}
    code, stdout, stderr = run_process([sys.executable, "-m", "benchmarks.worker", case.to_json()], env, timeout)
    if code is None:
        return {"case": json.loads(case.to_json()), "label": case.label,
                "error": f"stopped after {timeout:.0f} s: the run's time budget was spent"}  # fmt: skip
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    lines = (stderr or stdout or f"exit status {code}").strip().splitlines()
    return {"case": json.loads(case.to_json()), "label": case.label, "error": lines[-1][-300:]}


def run_process(cmd: list[str], env: dict[str, str], timeout: float | None = None) -> tuple[int | None, str, str]:
    """Run `cmd` in ROOT in a session of its own: exit status (None when stopped after `timeout` seconds, with every
    process it started), stdout and stderr."""
    with subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its DataLoader workers and pools too
            stdout, stderr = proc.communicate()
            return None, stdout, stderr
    return proc.returncode, stdout, stderr


def run_cases(
    cases: list[Case],
    env: dict[str, str],
    results: dict,
    save: Callable[[dict], object],
    deadline: float | None = None,
    in_process: bool = False,
) -> None:
    """Run `cases` in order into ``results["cases"]``, calling `save` after each one, so that a run cut short keeps
    every number it has. Past `deadline` (a `time.time()`), cases are recorded as not started."""
    for case in cases:
        started = time.time()
        left = None if deadline is None else deadline - started
        if left is not None and left < MIN_CASE_S:
            result = {"case": json.loads(case.to_json()), "label": case.label,
                      "skipped": "not started: the run's time budget was spent"}  # fmt: skip
        else:
            result = run_case(case, env, left, in_process)
        if case.task == "prepare" and "error" not in result and "skipped" not in result:
            result["seed_metrics"] = adapters.seed_cfg(case.architecture).metrics
        if case.task == "peak" and "error" not in result:
            results["meta"].update({k: v for k, v in result.items() if k.startswith("gemm_")})
        results["cases"].append(result)
        print(
            f"[{time.time() - started:6.0f} s] {case.architecture} {case.task:8s} {case.label:28s} {_summary(result)}",
            flush=True,
        )
        save(results)


def pair_cases(results: dict, rounds: int, warmup: int) -> list[Case]:
    """A ``pair`` case for each two rows whose speed ratio decides a target (`report.speed_pairs`): both paths timed
    alternately in one process for `rounds` rounds, after `warmup` calls each (at least one: compilation)."""
    cases = []
    for a, b in report.speed_pairs(results):
        common = {k: a[k] for k in ("architecture", "device", "threads", "workdir", "train_steps", "seed")}
        common["size"] = tuple(a["size"])
        pair = [dict(a, batches=[1]), dict(b, batches=[1])]
        cases.append(Case(task="pair", library="ours", **common, warmup=max(warmup, 1), runs=rounds,
                          extra={"pair": pair}))  # fmt: skip
    return cases


def save_results(results: dict, out: Path, name: str) -> str:
    """Ratios, targets and the comparison with the seed table of `results`, written as ``OUT/NAME.json`` and
    ``.md`` (each replaced whole); returns the Markdown."""
    results["meta"]["loadavg_end"] = list(os.getloadavg())
    report.scale_reused(results)
    report.add_ratios(results)
    results["targets"] = report.evaluate_targets(results)
    results["seed_table"] = report.seed_table(results)
    text = report.render(results)
    report.write_atomic(out / f"{name}.json", json.dumps(results, indent=1) + "\n")
    report.write_atomic(out / f"{name}.md", text + "\n")
    return text


def free_name(out: Path, stem: str) -> str:
    """`stem`, or ``stem_2``, ``stem_3`` ... where a results file of that name exists: a second run on the same day
    does not overwrite the first."""
    name, n = stem, 2
    while (out / f"{name}.json").exists():
        name, n = f"{stem}_{n}", n + 1
    return name


def worker_env(threads: int = 0, cpu_isa: str = "native") -> dict[str, str]:
    """The environment of the workers: this checkout first on the path, the thread count and the ISA cap."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if cpu_isa == "avx2":
        isa = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
        env.update(isa)
        os.environ.update(isa)  # so that the plan knows what dtype="auto" picks under the cap
    return env


def make_meta(
    device: str,
    threads: int,
    dtype: str,
    models: list[str],
    warmup: int,
    runs: int,
    command: str,
    notes: list[str],
    cpu_isa: str = "native",
) -> dict:
    """The stamp of a results file: date, device, versions, settings, load."""
    import torch

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "device_type": device,
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "dtype": dtype,
        "models": models,
        "versions": adapters.library_versions(),
        "warmup": warmup,
        "runs": runs,
        "loadavg_start": list(os.getloadavg()),
        "command": command,
        "notes": notes,
        "cpu_isa": cpu_isa,
    }
    if device == "cpu":
        stamp = cpu_stamp()
        meta["cpu"] = stamp
        per_cycle = fp32_flops_per_cycle(stamp)
        if per_cycle and stamp["mhz"]:
            meta["fp32_peak_gflops"] = meta["threads"] * stamp["mhz"] / 1000 * per_cycle
            meta["fp32_flops_per_cycle"] = per_cycle
        if cpu_isa == "avx2":
            meta["device_name"] += "; PyTorch capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2)"
        real_avx2 = "avx512f" not in stamp["simd_flags"]
        meta["real_avx2_only_cpu"] = real_avx2
        meta["avx2_rows"] = (
            "every row ran on a real AVX2-only CPU"
            if real_avx2
            else "no row ran on a real AVX2-only CPU: this CPU has AVX-512"
            + (
                "; --cpu-isa avx2 caps PyTorch only (oneDNN, ATen): onnxruntime and the other runtimes still use "
                "AVX-512 here, so their rows overstate an AVX2-only CPU"
                if cpu_isa == "avx2"
                else ""
            )
        )
    if device == "cuda":
        meta["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32  # "fp32" convs use TF32 when True, for every library
        meta["cuda"] = torch.version.cuda
    return meta


def _summary(result: dict) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    task = result["case"]["task"]
    if task == "infer":
        parts = [f"b{b}: {e['images_per_s']:.3g} img/s" for b, e in result["batches"].items()]
        if "check" in result:
            parts.append(f"agreement {100 * result['check']['argmax_agreement']:.2f}%")
        return ", ".join(parts)
    if task in ("train", "predict"):
        return f"{result['median_s']:.2f} s, peak {result['peak_mem_bytes'] / 2**30:.2f} GB"
    if task == "folder":
        return f"{result['images_per_s']:.3g} img/s ({result['images']} images in {result['seconds']:.1f} s)"
    if task == "pair":
        ms = " / ".join(f"{1000 * t:.0f}" for t in result["median_s"])
        return f"{result['speed_ratio']:.2f}x ({ms} ms, {result['rounds']} alternated rounds)"
    if task == "peak":
        return f"GEMM fp32 {result['gemm_fp32_gflops']:.0f} GFLOP/s, bf16 {result['gemm_bf16_gflops']:.0f} GFLOP/s"
    return f"{result.get('prepare_s', 0):.0f} s"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    cpu = args.device == "cpu"
    args.dtype = args.dtype or ("bf16" if cpu else "fp16")
    if args.dtype == "fp16" and cpu:
        print("--dtype fp16 is for GPUs; use bf16 on the CPU", file=sys.stderr)
        return 2
    args.warmup = args.warmup if args.warmup is not None else (2 if cpu else 10)
    args.runs = args.runs or (7 if cpu else 50)
    args.train_runs = args.train_runs or (3 if cpu else 20)
    args.predict_runs = args.predict_runs or (3 if cpu else 10)
    models = list(MMSEG_ARCHITECTURES) if args.models == "all" else args.models.split(",")
    for arch in models:
        adapters.seed_cfg(arch)  # a clear error for unknown names before anything runs
    try:
        peers = _names(args.compare, PEERS, "peer")
    except argparse.ArgumentTypeError as e:
        print(e, file=sys.stderr)
        return 2
    notes = []
    for peer in peers:
        ok, note = adapters.available(peer)
        if not ok:
            notes.append(note)
    peers = tuple(p for p in peers if adapters.available(p)[0])
    try:
        args.deploy_formats = _deploy_formats(args.formats, notes)
    except argparse.ArgumentTypeError as e:
        print(e, file=sys.stderr)
        return 2
    args.auto = not args.no_auto
    (ROOT / args.workdir).mkdir(parents=True, exist_ok=True)  # workers run in ROOT: relative paths start there
    args.out.mkdir(parents=True, exist_ok=True)
    if args.wait_load is not None:
        wait_for_quiet(args.wait_load, args.wait_timeout)

    env = worker_env(args.threads, args.cpu_isa)
    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    meta = make_meta(
        args.device, args.threads, args.dtype, models, args.warmup, args.runs, command, notes, args.cpu_isa
    )
    for note in notes:
        print(note, flush=True)
    results = {"meta": meta, "cases": []}
    if args.reuse is not None:
        missing = tuple(p for p in ("mmseg", "smp") if p not in peers)
        reused = reused_cases(args.reuse, missing, models, args.size)
        results["cases"] += reused
        if reused:
            meta["notes"].append(f"{', '.join(missing)} not installed: their rows are reused from {args.reuse.name}")
    size = args.size or tuple(adapters.seed_cfg(models[0]).crop_size)
    short = "all" if args.models == "all" else "+".join(m.removeprefix("deeplabv3plus_") for m in models)
    isa = "" if args.cpu_isa == "native" else f"-{args.cpu_isa}"
    name = args.name or free_name(
        args.out, f"{args.device}-{meta['threads']}t{isa}_{short}_{size[0]}x{size[1]}_{meta['date'][:10]}"
    )
    save = functools.partial(save_results, out=args.out, name=name)
    run_cases(plan(args, models, peers), env, results, save)
    if cpu and args.pair_rounds > 0:
        run_cases(pair_cases(results, args.pair_rounds, args.warmup), env, results, save)
    print(save_results(results, args.out, name))
    print(f"\nwrote {args.out / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
