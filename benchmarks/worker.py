"""Run one benchmark case in this (fresh) process and print its result as one JSON line.

``python -m benchmarks.worker '<case json>'``; `benchmarks/run.py` starts one worker per case, so every case has
its own peak memory, its own thread settings and no warm state from another library. Tasks:

- ``prepare``: make the benchmark weights (calibrated, see `benchmarks.inputs`), the check images and the fp32 eager
  reference logits on them, in the work folder.
- ``infer``: throughput and latency at each batch size, peak memory, and agreement with the fp32 reference (for
  ours, deeplabv3p's eager, optimized and compiled paths, or with ``extra={"backend": "auto"}`` what
  `deeplabv3p.deploy.fastest` picks; for each deployment format, its exported file run by its runtime).
- ``train``: forward + backward + SGD step time and peak memory at the training batch.
- ``predict``: end-to-end ``model.predict`` (ours) / ``mmseg.apis.inference_model`` on full-size images.
- ``folder``: images/s of predicting a folder of full-size image files: today's one-at-a-time loop against the
  pipeline with reading workers and batching.
- ``peak``: the best fp32 and bf16 matrix-multiply rate here (the practical ceiling of the FLOP rate).
- ``pair``: two ``infer`` paths (``extra["pair"]``) timed alternately in one process, A B B A ..., at batch 1: their
  speed ratio without the drift of a shared machine between rows measured minutes apart (the targets' ratios).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULT_PREFIX = "RESULT "
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Our optimized model's dtype= argument per case dtype: "auto" lets deeplabv3p choose (see inference/precision.py).
_OPTIMIZE_DTYPE = {"fp32": None, "bf16": "bfloat16", "fp16": "float16", "auto": "auto"}


@dataclass
class Case:
    """Everything one measurement depends on."""

    task: str
    library: str
    architecture: str
    size: tuple[int, int]
    device: str = "cpu"
    threads: int = 0
    dtype: str = "fp32"
    optimize: bool = False  # ours: optimize_for_inference (BN folded, channels_last)
    channels_last: bool = False  # peers: model and input in channels_last
    compile: bool = False
    grad_ckpt: bool = False
    batches: tuple[int, ...] = (1,)
    warmup: int = 2
    runs: int = 7
    workdir: str = ""
    check_images: int = 2
    predict_size: tuple[int, int] = (1024, 2048)
    train_steps: int = 300  # prepare: steps of training on the synthetic task
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.task == "pair":
            first, second = (Case.from_dict(c) for c in self.extra["pair"])
            return f"{first.label} vs {second.label}"
        parts = [self.library, self.dtype]
        if self.optimize:
            parts.append("fold+cl")
        elif self.channels_last:
            parts.append("cl")
        if self.compile:
            parts.append("compile")
        if self.grad_ckpt:
            parts.append("ckpt")
        if self.extra.get("backend"):
            parts.append(f"backend={self.extra['backend']}")
        return " ".join(parts)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Case:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        """A case from its `asdict` form (as results files hold it)."""
        data = dict(data)
        for key in ("size", "batches", "predict_size"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _setup(case: Case):
    import torch

    if case.threads:
        torch.set_num_threads(case.threads)
    torch.manual_seed(case.seed)
    if case.device == "cuda":
        torch.backends.cudnn.benchmark = True
    return torch


def _autocast(torch, case: Case):
    """The caller's autocast for the peers' reduced precision; ours (optimized) and the exported engines (onnxruntime,
    TensorRT) run their own."""
    if (
        case.dtype not in ("bf16", "fp16")
        or (case.library == "ours" and case.optimize)
        or case.library in ("onnxruntime", "tensorrt")
    ):
        return contextlib.nullcontext()
    return torch.autocast(device_type=case.device, dtype=getattr(torch, DTYPES[case.dtype]))


def _paths(case: Case) -> dict[str, Path]:
    work = Path(case.workdir)
    return {
        "weights": work / f"{case.architecture}_steps{case.train_steps}_seed{case.seed}.safetensors",
        "check": work / f"{case.architecture}_{case.size[0]}x{case.size[1]}_check.pt",
        "reference": work / f"{case.architecture}_{case.size[0]}x{case.size[1]}_reference.pt",
    }


def prepare(case: Case) -> dict[str, Any]:
    """Benchmark weights (trained briefly, cached per architecture), check images and reference logits (per size)."""
    torch = _setup(case)
    from safetensors.torch import load_file, save_file

    import deeplabv3p
    from benchmarks.inputs import class_histogram, labelled_batch, train_briefly
    from deeplabv3p.pretrained.state_dict import load_into

    paths = _paths(case)
    device = torch.device(case.device)
    model = deeplabv3p.create_model(case.architecture)
    info_path = paths["weights"].with_suffix(".json")
    started = time.perf_counter()
    if paths["weights"].is_file() and info_path.is_file():
        load_into(model, load_file(str(paths["weights"])))
        info = json.loads(info_path.read_text())
    else:
        info = train_briefly(model, case.train_steps, seed=case.seed, device=device)
        info["train_s"] = time.perf_counter() - started
        model.cpu()
        for path, write in (
            (paths["weights"], lambda p: save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p))),
            (info_path, lambda p: p.write_text(json.dumps(info))),
        ):
            tmp = path.with_name(path.name + ".tmp")
            write(tmp)
            os.replace(tmp, path)
    model = model.to(device).eval()
    check, labels = labelled_batch(*case.size, batch=case.check_images, seed=case.seed + 10_000_000)
    generator = torch.Generator().manual_seed(case.seed)
    with torch.inference_mode():
        logits = torch.cat([model(x[None].to(device)).cpu() for x in check])
        # Robustness of the network itself: labels kept under Gaussian input noise of one grey level (std 57.4).
        noise = torch.randn(check.shape, generator=generator) / 57.4
        noisy = torch.cat([model(x[None].to(device)).cpu() for x in check + noise])
    for key, value in (("check", check), ("reference", logits)):
        tmp = paths[key].with_name(paths[key].name + ".tmp")
        torch.save(value, tmp)
        os.replace(tmp, paths[key])
    pred = logits.argmax(1)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        deeplabv3p.create_model(case.architecture).eval().to("meta")(torch.empty(1, 3, *case.size, device="meta"))
    return {
        **info,
        "gflop_per_image": counter.get_total_flops() / 1e9,
        "prepare_s": time.perf_counter() - started,
        "check_pixel_accuracy": (pred == labels).double().mean().item(),
        "noise_agreement": (noisy.argmax(1) == pred).double().mean().item(),
        "class_histogram": class_histogram(pred, logits.shape[1]),
        "num_classes": logits.shape[1],
    }


def _agreement(torch, case: Case, infer: Callable) -> dict[str, Any]:
    paths = _paths(case)
    check = torch.load(paths["check"])
    reference = torch.load(paths["reference"])
    outputs = []
    with torch.inference_mode():
        for x in check:
            outputs.append(infer(x[None].to(case.device)).float().cpu())
    got = torch.cat(outputs)
    return {
        "max_abs_diff": (got - reference).abs().max().item(),
        "rel_diff": ((got - reference).abs().max() / reference.abs().max()).item(),
        "argmax_agreement": (got.argmax(1) == reference.argmax(1)).double().mean().item(),
    }


def _inference_call(torch, case: Case, runner) -> tuple[Callable, Any]:
    """The timed call for this case's path, and the model object it runs."""
    model, infer = runner.model, runner.infer
    if case.library == "ours" and case.optimize:
        model = model.optimize_for_inference(dtype=_OPTIMIZE_DTYPE[case.dtype])  # runs in model.inference_dtype
        infer = model
    elif case.channels_last and case.library != "onnxruntime":
        model = model.to(memory_format=torch.channels_last)
    if case.compile:
        import torch._inductor.config as inductor_config

        if case.device == "cpu":
            inductor_config.freezing = True  # weights become constants: prepacked for oneDNN
        infer = torch.compile(infer)
    to_cl = case.optimize or case.channels_last

    def call(x):
        if to_cl and case.library != "onnxruntime":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _autocast(torch, case):
            return infer(x)

    return call, model


def _runner(torch, case: Case):
    """The built network of an ``infer`` case (`benchmarks.adapters.Runner`)."""
    from benchmarks.adapters import build

    weights, work = Path(_paths(case)["weights"]), Path(case.workdir)
    if case.extra.get("backend") == "auto":
        from benchmarks.adapters import build_auto

        return build_auto(case.architecture, weights, case.threads, work, case.size, case.warmup, case.runs)
    return build(case.library, case.architecture, weights, torch.device(case.device), case.threads, work,
                 case.dtype, case.size)  # fmt: skip


def run_infer(case: Case) -> dict[str, Any]:
    torch = _setup(case)
    from benchmarks.timing import (
        Stats,
        current_memory_bytes,
        peak_memory_bytes,
        pool_size,
        reset_peak_memory,
        time_calls,
    )

    device = torch.device(case.device)
    runner = _runner(torch, case)
    call, model = _inference_call(torch, case, runner)
    result: dict[str, Any] = {"num_params": runner.num_params, "note": runner.note, "batches": {}, **runner.extra}
    if case.library == "ours" and case.optimize:
        result["inference_dtype"] = str(model.inference_dtype).removeprefix("torch.")
    for batch in case.batches:
        shape = (batch, 3, *case.size)
        n = pool_size(4 * batch * 3 * case.size[0] * case.size[1])
        pool = [torch.randn(shape, device=device) for _ in range(n)]
        gc.collect()
        baseline = current_memory_bytes(device)
        resettable = reset_peak_memory(device)
        times, first = time_calls(call, pool, case.warmup, case.runs, device)
        stats = Stats.of(times)
        result["batches"][str(batch)] = {
            **stats.to_dict(),
            "images_per_s": batch / stats.median_s,
            "first_call_s": first,
            "peak_mem_bytes": peak_memory_bytes(device),
            "baseline_mem_bytes": baseline,
            "peak_mem_window": "since reset" if resettable else "since process start",
        }
        del pool
    if case.library != "smp":
        result["check"] = _agreement(torch, case, call)
    return result


def run_pair(case: Case) -> dict[str, Any]:
    """Paths A and B of ``case.extra["pair"]`` at batch 1, each warmed up (`case.warmup` calls), then timed in
    `case.runs` rounds of A B, B A, ... on the same inputs: the median per-round ratio of B's time to A's is how
    many times faster A runs than B here, free of the drift between two rows measured minutes apart."""
    torch = _setup(case)
    import statistics

    from benchmarks.timing import synchronize

    device = torch.device(case.device)
    paths = [Case.from_dict(c) for c in case.extra["pair"]]
    runners = [_runner(torch, path) for path in paths]
    calls = [_inference_call(torch, path, runner)[0] for path, runner in zip(paths, runners)]
    inputs = [torch.randn(1, 3, *case.size, device=device) for _ in range(2)]
    for call in calls:
        for i in range(case.warmup):
            call(inputs[i % 2])
    synchronize(device)
    times: list[list[float]] = [[], []]
    for r in range(case.runs):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            start = time.perf_counter()
            calls[i](inputs[r % 2])
            synchronize(device)
            times[i].append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(*times)]
    return {
        "labels": [path.label for path in paths],
        "auto_chosen": [runner.extra.get("auto_chosen") for runner in runners],  # what an auto path ran here
        "times_s": times,
        "median_s": [statistics.median(t) for t in times],
        "speed_ratio": statistics.median(ratios),
        "rounds": case.runs,
    }


def run_train(case: Case) -> dict[str, Any]:
    torch = _setup(case)
    from benchmarks.adapters import IGNORE_INDEX, build
    from benchmarks.timing import Stats, peak_memory_bytes, reset_peak_memory, time_calls

    device = torch.device(case.device)
    runner = build(
        case.library, case.architecture, Path(_paths(case)["weights"]), device, case.threads, Path(case.workdir)
    )
    model = runner.model.train()
    if case.grad_ckpt:
        model.set_grad_checkpointing()
    if case.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(case.device) if case.dtype == "fp16" else None
    batch = case.batches[0]
    pool = []
    for _ in range(2):
        x = torch.randn(batch, 3, *case.size, device=device)
        labels = torch.randint(0, 19, (batch, *case.size), device=device)
        labels[torch.rand(labels.shape, device=device) < 0.05] = IGNORE_INDEX
        pool.append((x, labels))

    def step(item):
        x, labels = item
        if case.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(torch, case):
            loss = runner.train_loss(x, labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    gc.collect()
    resettable = reset_peak_memory(device)
    times, first = time_calls(step, pool, case.warmup, case.runs, device)
    stats = Stats.of(times)
    return {
        "num_params": runner.num_params,
        "note": runner.note,
        "batch": batch,
        **stats.to_dict(),
        "images_per_s": batch / stats.median_s,
        "first_call_s": first,
        "peak_mem_bytes": peak_memory_bytes(device),
        "peak_mem_window": "since reset" if resettable else "since process start",
    }


def run_predict(case: Case) -> dict[str, Any]:
    torch = _setup(case)
    from benchmarks.adapters import build, build_mmseg_model, mmseg_config, ours_to_mmseg, seed_cfg
    from benchmarks.inputs import dead_leaves
    from benchmarks.timing import Stats, peak_memory_bytes, reset_peak_memory, time_calls

    device = torch.device(case.device)
    images = [dead_leaves(*case.predict_size, seed=case.seed + 20_000_000 + i)[0] for i in range(2)]
    weights = Path(_paths(case)["weights"])
    if case.library == "ours":
        runner = build("ours", case.architecture, weights, device, case.threads, Path(case.workdir))
        model = runner.model.optimize_for_inference() if case.optimize else runner.model
        if not hasattr(model, "predict"):
            return {"skipped": "this deeplabv3p has no predict() yet"}
        dtype = None if case.dtype == "fp32" else getattr(torch, DTYPES[case.dtype])

        def call(image):
            return model.predict(image, dtype=dtype, channels_last=case.optimize)

    elif case.library == "mmseg":
        from safetensors.torch import load_file

        cfg = mmseg_config(case.architecture)  # installs the mmcv.ops shim before any mmseg import
        from mmseg.apis import inference_model, init_model

        model = init_model(cfg, checkpoint=None, device=case.device)
        model.load_state_dict(ours_to_mmseg(build_mmseg_model(case.architecture), load_file(str(weights))))
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]  # mmseg reads arrays as BGR
        images = bgr

        def call(image):
            with _autocast(torch, case):
                return inference_model(model, image)

    else:
        return {"skipped": f"{case.library} has no end-to-end predict"}
    reset_peak_memory(device)
    times, first = time_calls(call, images, case.warmup, case.runs, device)
    stats = Stats.of(times)
    return {
        "image_size": list(case.predict_size),
        "test_mode": seed_cfg(case.architecture).test.mode,
        **stats.to_dict(),
        "images_per_s": 1 / stats.median_s,
        "first_call_s": first,
        "peak_mem_bytes": peak_memory_bytes(device),
    }


def run_folder(case: Case) -> dict[str, Any]:
    """images/s over a folder of full-size JPEG files, written as ``deeplabv3p predict`` writes them.

    ``extra["pipeline"]`` False: today's loop, one ``model.predict(path)`` at a time (read, resize, network and
    post-processing in turn, in one thread). True: `write_predictions` with ``extra["workers"]`` reading processes
    and ``extra["batch"]`` images per forward pass. Both use our optimized model at ``dtype="auto"``, at the weights'
    test scale unless ``extra["resize"]`` is False (a dry run's small images stay small).
    """
    torch = _setup(case)
    from PIL import Image

    from benchmarks.adapters import build
    from benchmarks.inputs import dead_leaves
    from benchmarks.timing import peak_memory_bytes, reset_peak_memory
    from deeplabv3p.inference.writer import write_predictions

    device = torch.device(case.device)
    count = int(case.extra.get("images", 6))
    folder = Path(case.workdir) / f"folder_{case.predict_size[0]}x{case.predict_size[1]}_{count}"
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        seeds = [case.seed + 30_000_000 + i for i in range(count)]
        with ProcessPoolExecutor(max_workers=min(count, os.cpu_count() or 1)) as pool:  # seconds per full-size image
            images = pool.map(functools.partial(dead_leaves, *case.predict_size), seeds)
            for i, (image, _) in enumerate(images):
                Image.fromarray(image).save(tmp / f"frame{i:03d}.jpg", quality=90)
        os.replace(tmp, folder)
    runner = build("ours", case.architecture, Path(_paths(case)["weights"]), device, case.threads, Path(case.workdir))
    model = runner.model.optimize_for_inference(dtype="auto")
    files = sorted(folder.glob("*.jpg"))
    options = {"resize": bool(case.extra.get("resize", True))}  # False: at the files' size, not the weights' scale
    model.predict(files[0], **options)  # warm-up: oneDNN primitives for this size
    out = Path(case.workdir) / f"folder_out_{os.getpid()}"
    reset_peak_memory(device)
    started = time.perf_counter()
    if case.extra.get("pipeline"):
        summary = write_predictions(
            model, folder, out, num_workers=int(case.extra["workers"]), batch_size=int(case.extra["batch"]), **options
        )
        assert summary.written == count
    else:
        out.mkdir(parents=True)
        for path in files:
            model.predict(path, **options).save(out / f"{path.stem}.png")
    seconds = time.perf_counter() - started
    import shutil

    shutil.rmtree(out)
    return {
        "images": count,
        "image_size": list(case.predict_size),
        "inference_dtype": str(model.inference_dtype).removeprefix("torch."),
        "seconds": seconds,
        "images_per_s": count / seconds,
        "peak_mem_bytes": peak_memory_bytes(device),
    }


def run_peak(case: Case) -> dict[str, Any]:
    """Best of several 4096^3 matrix multiplies, fp32 and bf16: the FLOP rate this machine actually delivers.

    A dtype this CPU only emulates (bf16 without AVX512-BF16, or under ``--cpu-isa avx2``) runs at a few GFLOP/s:
    it is measured on 1024^3 instead, which a quick first multiply decides."""
    torch = _setup(case)
    result = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        probe = torch.randn(1024, 1024).to(dtype)
        start = time.perf_counter()
        probe @ probe
        n = 4096 if time.perf_counter() - start < 0.1 else 1024  # 4096^3 would take over a minute a call
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        result[f"gemm_{name}_gflops"] = 2 * n**3 / best / 1e9
        result[f"gemm_{name}_n"] = n
    return result


TASKS = {
    "prepare": prepare,
    "infer": run_infer,
    "train": run_train,
    "predict": run_predict,
    "folder": run_folder,
    "peak": run_peak,
    "pair": run_pair,
}


def measure(case: Case) -> dict[str, Any]:
    """Run `case` in this process: its result, stamped with the case, its label, the load and its wall time."""
    started = time.time()
    load = os.getloadavg()
    result = TASKS[case.task](case)
    result.update(
        case=asdict(case),
        label=case.label,
        loadavg_start=list(load),
        loadavg_end=list(os.getloadavg()),
        wall_s=time.time() - started,
    )
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.worker '<case json>'", file=sys.stderr)
        return 2
    print(RESULT_PREFIX + json.dumps(measure(Case.from_json(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
