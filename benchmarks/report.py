"""Results -> ratios, targets and a Markdown report; ``python -m benchmarks.report RESULTS.json`` re-renders one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

GIB = 2**30
MIN_AGREEMENT = 0.995
CPU_SPEEDUP_TARGET = 2.5
# Predict-at-scale targets (CPU, batch 1): our best agreeing path against mmseg fp32 and onnxruntime fp32.
CPU_VS_MMSEG_TARGET = 2.0
CPU_VS_ORT_TARGET = 1.1
GPU_SPEEDUP_TARGET = 3.0
GPU_TRAIN_MEMORY_TARGET = 0.6
# The seed table's fps: mmseg's whole-image test of Cityscapes frames (1024x2048, which the seven rows' test scale
# 2048x1024 with keep_ratio leaves as they are), batch 1, on a V100. Our fps compares with it at this size only.
SEED_FPS_SIZE = (1024, 2048)
GPU_FP16_SPEEDUP_TARGET = 1.5  # our fp16 path against our fp32 eager path, GPU
GPU_TENSORRT_TARGET = 2.0  # a TensorRT fp16 engine against our fp16 eager path (issue 19), GPU
INT8_VS_MMSEG_TARGET = 3.0  # the best INT8 runtime that keeps the labels against mmseg fp32 (issue 19), CPU


def _find(cases: list[dict], **match: Any) -> dict | None:
    for c in cases:
        if all(c["case"].get(k) == v for k, v in match.items()):
            return c
    return None


def _fps(case: dict | None, batch: int) -> float | None:
    if case is None or "error" in case:
        return None
    entry = case.get("batches", {}).get(str(batch))
    return entry["images_per_s"] if entry else None


def scale_reused(results: dict) -> None:
    """Carry reused peer rows (run.py ``--reuse``) over to this run's machine speed, in place and once.

    A reused row was measured on another day, maybe on other hardware. Its throughput is scaled by how our fp32
    eager path compares between the two runs (same network, same eager PyTorch kernels as mmseg's): an estimate of
    what the peer would do here, marked as such. Latencies are scaled alike; memory and agreement are kept.
    """
    cases = results["cases"]
    for c in cases:
        reference = c.get("reused_reference")
        if "reused_from" not in c or not reference or "scaled_by" in c:
            continue
        arch = c["case"]["architecture"]
        ours = _find(cases, architecture=arch, task="infer", library="ours", dtype="fp32", optimize=False,
                     compile=False)  # fmt: skip
        scales = {}
        for batch, entry in c["batches"].items():
            now = _fps(ours, int(batch))
            if not now or not reference.get(batch):
                continue
            scale = now / reference[batch]
            scales[batch] = scale
            entry["reused_images_per_s"] = entry["images_per_s"]
            entry["images_per_s"] *= scale
            for key in ("median_s", "p90_s", "mean_s", "min_s"):
                if key in entry:
                    entry[key] /= scale
        if scales:  # else not yet: our fp32 eager row may still come (results are saved after every case)
            c["scaled_by"] = scales


def add_ratios(results: dict) -> None:
    """Throughput and memory relative to mmseg fp32 of the same model, batch and task, in place."""
    cases = results["cases"]
    for c in cases:
        if "error" in c or "skipped" in c:
            continue
        arch, task = c["case"]["architecture"], c["case"]["task"]
        base = _find(cases, architecture=arch, task=task, library="mmseg", dtype="fp32", channels_last=False)
        if base is None or "error" in base or "skipped" in base:
            continue
        if task == "infer":
            for batch, entry in c["batches"].items():
                ref = _fps(base, int(batch))
                if ref:
                    entry["speed_vs_mmseg_fp32"] = entry["images_per_s"] / ref
        elif task in ("train", "predict"):
            c["speed_vs_mmseg_fp32"] = c["images_per_s"] / base["images_per_s"]
            if task == "train":
                c["memory_vs_mmseg_fp32"] = c["peak_mem_bytes"] / base["peak_mem_bytes"]


def _pairs(results: dict) -> dict[tuple[str, str, str], dict]:
    """The paired timings of a run (worker task ``pair``), by (architecture, label A, label B)."""
    return {
        (c["case"]["architecture"], *c["labels"]): c
        for c in results["cases"]
        if c["case"]["task"] == "pair" and "speed_ratio" in c
    }


def _speed(x: dict, y: dict, pairs: dict[tuple[str, str, str], dict]) -> tuple[float, dict[str, Any]]:
    """How many times faster row `x` runs than row `y` at batch 1: from their paired timing when the run made one
    (alternated in one process), else from the two rows; and the target fields that say which (``compare``: the
    two labels, ``rows_value``: the rows' ratio, ``paired_rounds``)."""
    rows = _fps(x, 1) / _fps(y, 1)
    fields: dict[str, Any] = {"compare": [x["label"], y["label"]], "rows_value": rows}
    pair = pairs.get((x["case"]["architecture"], x["label"], y["label"]))
    chosen = [x.get("auto_chosen"), y.get("auto_chosen")]
    if pair is None or pair.get("auto_chosen", chosen) != chosen:  # an auto path that ran another backend there
        return rows, fields
    return pair["speed_ratio"], {**fields, "paired_rounds": pair["rounds"]}


def speed_pairs(results: dict) -> list[tuple[dict, dict]]:
    """The rows whose speed ratio decides a target (A, B: the ``case`` dicts of both) and that have no paired timing
    yet; rows reused from an earlier run are not paired (they did not run here)."""
    by_label = {
        (c["case"]["architecture"], c["label"]): c
        for c in results["cases"]
        if c["case"]["task"] == "infer" and "reused_from" not in c
    }
    wanted: dict[tuple[str, str, str], tuple[dict, dict]] = {}
    for t in evaluate_targets(results):
        if "compare" not in t or "paired_rounds" in t:
            continue
        a, b = (by_label.get((t["model"], label)) for label in t["compare"])
        if a is not None and b is not None:
            wanted.setdefault((t["model"], *t["compare"]), (a["case"], b["case"]))
    return list(wanted.values())


AUTO_WITHIN = 0.95  # backend="auto" within 5% of the fastest full-precision row measured (issue 19)
FP32_LABELS = 0.999  # the deploy layer's full-precision bound


def _auto_targets(arch: str, infer: list[dict], pairs: dict | None = None) -> list[dict[str, Any]]:
    """backend="auto" against the fastest measured full-precision row whose labels agree within the FP32 bound."""
    auto = next((c for c in infer if c.get("auto_chosen") and _fps(c, 1)), None)
    rows = [
        c for c in infer
        if c["case"]["dtype"] == "fp32" and "reused_from" not in c and _fps(c, 1) and not c.get("auto_chosen")
        and c.get("check", {}).get("argmax_agreement", 0) >= FP32_LABELS
    ]  # fmt: skip
    if auto is None or not rows:
        return []
    best = max(rows, key=lambda c: _fps(c, 1))
    ratio, fields = _speed(auto, best, pairs or {})
    return [
        {
            "model": arch,
            "target": f"backend=auto within {1 - AUTO_WITHIN:.0%} of the fastest fp32 row with labels >= "
            f"{FP32_LABELS:.1%} equal (here {best['label']})",
            "path": auto["label"] + f" (= {auto['auto_chosen']})",
            "value": ratio,
            "agreement": auto.get("check", {}).get("argmax_agreement", 0.0),
            "met": ratio >= AUTO_WITHIN,
            **fields,
        }
    ]


def _int8_targets(arch: str, infer: list[dict], base: dict | None, pairs: dict | None = None) -> list[dict[str, Any]]:
    """The INT8 targets of issue 19: the fastest INT8 row that keeps >= 99.5% of fp32's labels, against mmseg
    fp32 when it ran (>= 3x), and which INT8 rows keep the labels at all."""
    rows = [c for c in infer if c["case"]["dtype"] == "int8" and _fps(c, 1)]
    eager = _find(infer, library="ours", dtype="fp32", optimize=False, compile=False)
    targets = []
    for c in rows:
        agreement = c.get("check", {}).get("argmax_agreement", 0.0)
        speed = f", {_fps(c, 1) / _fps(eager, 1):.2f}x our fp32 eager" if _fps(eager, 1) else ""
        targets.append(
            {
                "model": arch,
                "target": f"INT8 labels >= {MIN_AGREEMENT:.1%} equal to fp32 on the trained benchmark network",
                "path": c["label"] + speed,
                "value": agreement,
                "measured": f"{100 * agreement:.2f}% of the labels",
                "met": agreement >= MIN_AGREEMENT,
            }
        )
    keeping = [c for c in rows if c.get("check", {}).get("argmax_agreement", 0.0) >= MIN_AGREEMENT]
    if keeping and _fps(base, 1):
        best = max(keeping, key=lambda c: _fps(c, 1))
        ratio, fields = _speed(best, base, pairs or {})
        targets.append(
            {
                "model": arch,
                "target": f"best INT8 path >= {INT8_VS_MMSEG_TARGET}x mmseg fp32 at batch 1, labels >= "
                f"{MIN_AGREEMENT:.1%} equal",
                "path": best["label"],
                "value": ratio,
                "agreement": best["check"]["argmax_agreement"],
                "met": ratio >= INT8_VS_MMSEG_TARGET,
                **fields,
            }
        )
    return targets


def evaluate_targets(results: dict) -> list[dict[str, Any]]:
    """The issue's targets, each with the numbers that decide it."""
    cases, device = results["cases"], results["meta"]["device_type"]
    pairs = _pairs(results)
    targets = []
    for arch in results["meta"]["models"]:
        infer = [
            c for c in cases if c["case"]["architecture"] == arch and c["case"]["task"] == "infer" and "error" not in c
        ]
        targets += _auto_targets(arch, infer, pairs)
        base = _find(infer, library="mmseg", dtype="fp32", channels_last=False)
        targets += _int8_targets(arch, infer, base, pairs)
        if base is None or not _fps(base, 1):
            continue
        estimated = " (mmseg fp32 estimated from an earlier run)" if base and "reused_from" in base else ""
        ours = [c for c in infer if c["case"]["library"] == "ours" and _fps(c, 1)]
        agreeing = [c for c in ours if c.get("check", {}).get("argmax_agreement", 0) >= MIN_AGREEMENT]
        want = CPU_SPEEDUP_TARGET if device == "cpu" else GPU_SPEEDUP_TARGET
        best = max(agreeing, key=lambda c: _fps(c, 1)) if agreeing else None
        if best is not None:
            ratio, fields = _speed(best, base, pairs)
            targets.append(
                {
                    "model": arch,
                    "target": f"fastest path >= {want}x mmseg fp32 at batch 1, argmax agreement >= {MIN_AGREEMENT:.1%}"
                    + estimated,
                    "path": best["label"],
                    "value": ratio,
                    "agreement": best["check"]["argmax_agreement"],
                    "met": ratio >= want,
                    **fields,
                }
            )
        fp32 = [c for c in ours if c["case"]["dtype"] == "fp32" and not c["case"]["compile"]]
        if fp32 and device == "cpu":
            best_fp32 = max(fp32, key=lambda c: _fps(c, 1))
            fp32_ratio, fp32_fields = _speed(best_fp32, base, pairs)
            targets.append(
                {
                    "model": arch,
                    "target": "our fp32 path no slower than mmseg fp32 at batch 1" + estimated,
                    "path": best_fp32["label"],
                    "value": fp32_ratio,
                    "met": fp32_ratio >= 1.0,
                    **fp32_fields,
                }
            )
        ort = _find(infer, library="onnxruntime", dtype="fp32")
        if best is not None and device == "cpu":
            targets.append(
                {
                    "model": arch,
                    "target": f"best path >= {CPU_VS_MMSEG_TARGET}x mmseg fp32 at batch 1, agreement >= "
                    f"{MIN_AGREEMENT:.1%}{estimated}",
                    "path": best["label"],
                    "value": ratio,
                    "agreement": best["check"]["argmax_agreement"],
                    "met": ratio >= CPU_VS_MMSEG_TARGET,
                    **fields,
                }
            )
            if ort is not None and _fps(ort, 1):
                ort_ratio, ort_fields = _speed(best, ort, pairs)
                targets.append(
                    {
                        "model": arch,
                        "target": f"best path >= {CPU_VS_ORT_TARGET}x onnxruntime fp32 at batch 1",
                        "path": best["label"],
                        "value": ort_ratio,
                        "agreement": best["check"]["argmax_agreement"],
                        "met": ort_ratio >= CPU_VS_ORT_TARGET,
                        **ort_fields,
                    }
                )
        if device == "cuda":
            train = [c for c in cases if c["case"]["architecture"] == arch and c["case"]["task"] == "train"]
            base_train = _find(train, library="mmseg", dtype="fp32")
            amp = [c for c in train if c["case"]["library"] == "ours" and c["case"]["dtype"] != "fp32"]
            if base_train and "peak_mem_bytes" in base_train and amp:
                best = min((c for c in amp if "peak_mem_bytes" in c), key=lambda c: c["peak_mem_bytes"])
                ratio = best["peak_mem_bytes"] / base_train["peak_mem_bytes"]
                targets.append(
                    {
                        "model": arch,
                        "target": f"training peak memory <= {GPU_TRAIN_MEMORY_TARGET}x mmseg fp32",
                        "path": best["label"],
                        "value": ratio,
                        "met": ratio <= GPU_TRAIN_MEMORY_TARGET,
                    }
                )
    if device == "cuda":
        targets += _seed_targets(seed_table(results))
        targets += _tensorrt_targets(results)
    return targets


def _tensorrt_targets(results: dict) -> list[dict[str, Any]]:
    """TensorRT fp16 against our fp16 eager path (BatchNorm folded, channels_last, autocast) at batch 1, labels
    within `MIN_AGREEMENT` of fp32."""
    targets = []
    for arch in results["meta"]["models"]:
        infer = [c for c in results["cases"] if c["case"]["architecture"] == arch and c["case"]["task"] == "infer"]
        engine = _find(infer, library="tensorrt", dtype="fp16")
        eager = _find(infer, library="ours", dtype="fp16", compile=False)
        if not (_fps(engine, 1) and _fps(eager, 1)) or engine is None:
            continue
        ratio = _fps(engine, 1) / _fps(eager, 1)  # type: ignore[operator]
        agreement = engine.get("check", {}).get("argmax_agreement", 0.0)
        targets.append(
            {
                "model": arch,
                "target": f"TensorRT fp16 >= {GPU_TENSORRT_TARGET}x our fp16 eager at batch 1, argmax agreement >= "
                f"{MIN_AGREEMENT:.1%}",
                "path": engine["label"],
                "value": ratio,
                "agreement": agreement,
                "met": ratio >= GPU_TENSORRT_TARGET and agreement >= MIN_AGREEMENT,
            }
        )
    return targets


def _seed_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPU targets against the seed table: fps at the seed's size, fp16 over fp32, AMP training memory."""
    targets = []
    for row in rows:
        model, seed_size = row["model"], f"{SEED_FPS_SIZE[0]}x{SEED_FPS_SIZE[1]}"
        if row["best_vs_seed"] is not None and tuple(row["infer_size"]) == SEED_FPS_SIZE:
            target = f"fastest agreeing path >= the seed's fps ({row['seed_fps']}, {row['seed_fps_device']})"
            targets.append(
                {
                    "model": model,
                    "target": f"{target} at {seed_size}, batch 1",
                    "path": row["best_path"],
                    "value": row["best_vs_seed"],
                    "met": row["best_vs_seed"] >= 1.0,
                }
            )
        if row["fp16_vs_fp32"] is not None:
            targets.append(
                {
                    "model": model,
                    "target": f"fp16 >= {GPU_FP16_SPEEDUP_TARGET}x our fp32 eager, batch 1",
                    "path": "fp16 fold+cl",
                    "value": row["fp16_vs_fp32"],
                    "met": row["fp16_vs_fp32"] >= GPU_FP16_SPEEDUP_TARGET,
                }
            )
        if row["amp_mem_vs_seed"] is not None:
            targets.append(
                {
                    "model": model,
                    "target": f"AMP training peak memory <= the seed's Mem ({row['seed_mem_gb']} GB), batch 2",
                    "path": row["train_amp_path"],
                    "value": row["amp_mem_vs_seed"],
                    "met": row["amp_mem_vs_seed"] <= 1.0,
                }
            )
    return targets


def _ok(case: dict) -> bool:
    return "error" not in case and "skipped" not in case


def seed_table(results: dict) -> list[dict[str, Any]]:
    """Per model: the seed table's fps and training memory (``meta["seed"]``, else the prepare case's) beside our
    inference paths at batch 1, mmseg's fp32 where it ran, and the training step's peak memory."""
    cases, rows = results["cases"], []
    for arch in results["meta"]["models"]:
        mine = [c for c in cases if c["case"]["architecture"] == arch and _ok(c) and "reused_from" not in c]
        prep = _find(mine, task="prepare")
        seed = results["meta"].get("seed", {}).get(arch) or (prep or {}).get("seed_metrics") or {}
        ours = [c for c in mine if c["case"]["task"] == "infer" and c["case"]["library"] == "ours" and _fps(c, 1)]
        fp32 = _find(ours, dtype="fp32", optimize=False, compile=False)
        fp16 = _find(ours, dtype="fp16", compile=False)
        bf16 = _find(ours, dtype="bf16", compile=False)
        compiled = _find(ours, compile=True)
        mmseg = _find(mine, task="infer", library="mmseg", dtype="fp32")
        agreeing = [c for c in ours if c.get("check", {}).get("argmax_agreement", 0) >= MIN_AGREEMENT]
        best = max(agreeing, key=lambda c: _fps(c, 1)) if agreeing else None  # type: ignore[arg-type, return-value]
        train = [c for c in mine if c["case"]["task"] == "train" and c["case"]["library"] == "ours"]
        amp = next((c for c in train if c["case"]["dtype"] != "fp32" and not c["case"]["grad_ckpt"]), None)
        train32 = _find(train, dtype="fp32", grad_ckpt=False)
        size = (fp32 or prep or {"case": {"size": None}})["case"]["size"]
        row: dict[str, Any] = {
            "model": arch,
            "infer_size": list(size) if size else None,
            "seed_fps": seed.get("fps"),
            "seed_fps_device": seed.get("fps_device", "V100"),
            "seed_mem_gb": seed.get("train_mem_gb"),
            "fp32_fps": _fps(fp32, 1),
            "fp16_fps": _fps(fp16, 1),
            "bf16_fps": _fps(bf16, 1),
            "compiled_fps": _fps(compiled, 1),
            "compiled_path": compiled["label"] if compiled else None,
            "mmseg_fp32_fps": _fps(mmseg, 1),
            "best_fps": _fps(best, 1),
            "best_path": best["label"] if best else None,
            "best_peak_mem_gb": best["batches"]["1"]["peak_mem_bytes"] / GIB if best else None,
            "train_amp_path": amp["label"] if amp else None,
            "train_amp_peak_gb": amp["peak_mem_bytes"] / GIB if amp else None,
            "train_fp32_peak_gb": train32["peak_mem_bytes"] / GIB if train32 else None,
        }
        row["best_vs_seed"] = row["best_fps"] / row["seed_fps"] if row["best_fps"] and row["seed_fps"] else None
        row["fp16_vs_fp32"] = row["fp16_fps"] / row["fp32_fps"] if row["fp16_fps"] and row["fp32_fps"] else None
        amp_gb, seed_gb = row["train_amp_peak_gb"], row["seed_mem_gb"]
        row["amp_mem_vs_seed"] = amp_gb / seed_gb if amp_gb is not None and seed_gb else None
        rows.append(row)
    return rows


def _seed_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows or not any(r["seed_fps"] or r["seed_mem_gb"] for r in rows):
        return []
    sizes = sorted({"x".join(map(str, r["infer_size"])) for r in rows if r["infer_size"]})
    seed = f"{SEED_FPS_SIZE[0]}x{SEED_FPS_SIZE[1]}"
    lines = [
        "## Against the seed table (mmseg, V100)",
        "",
        f"Inference images/s at {', '.join(sizes) or '?'}, batch 1; the seed's fps is mmseg's whole-image test of "
        f"{seed} Cityscapes frames on a V100"
        + ("" if sizes == [seed] else " (not comparable: measured here at another size)")
        + ". Best: our fastest path whose argmax agrees with fp32 eager on >= "
        f"{MIN_AGREEMENT:.1%} of the pixels. Training: forward + backward + SGD at the crop size, batch 2, peak "
        "allocated memory against the seed's Mem (GB) column (max allocated, as mmseg logs it).",
        "",
        "| model | seed fps | ours fp32 | ours fp16 | ours bf16 | compiled | mmseg fp32 | best / seed | fp16 / fp32 "
        "| train AMP peak GB | seed Mem GB | AMP / seed Mem |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {_num2(r['seed_fps'])} | {_num2(r['fp32_fps'])} | {_num2(r['fp16_fps'])} | "
            f"{_num2(r['bf16_fps'])} | {_num2(r['compiled_fps'])} | {_num2(r['mmseg_fp32_fps'])} | "
            f"{_x(r['best_vs_seed'])} | {_x(r['fp16_vs_fp32'])} | {_num2(r['train_amp_peak_gb'])} | "
            f"{_num2(r['seed_mem_gb'])} | {_x(r['amp_mem_vs_seed'])} |"
        )
    return [*lines, ""]


def _num2(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _tests_lines(tests: dict[str, Any] | None) -> list[str]:
    if not tests:
        return []
    lines = [f"## GPU tests: `{tests['command']}`", "", f"- {tests['summary']} (exit status {tests['returncode']}, "
             f"{tests['seconds']:.0f} s)"]  # fmt: skip
    if tests.get("stopped_in"):
        lines.append(f"- running when stopped: {tests['stopped_in']}")
    lines += [f"- {line}" for line in tests.get("failures", [])]
    return [*lines, ""]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half-written result."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _gb(value: float | None) -> str:
    return "" if value is None else f"{value / GIB:.2f}"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def render(results: dict) -> str:
    meta = results["meta"]
    mem_name = "peak RSS (GB)" if meta["device_type"] == "cpu" else "max allocated (GB)"
    lines = [
        f"# deeplabv3p benchmark: {meta['device_name']}",
        "",
        f"- date (UTC): {meta['date']}; threads: {meta['threads']}; reduced precision: {meta['dtype']}",
        f"- load average (1, 5, 15 min) at start {_load(meta['loadavg_start'])}, at end {_load(meta['loadavg_end'])}"
        f" on {meta['cpu_count']} logical CPUs",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- command: `{meta['command']}`",
        f"- inference: {meta['warmup']} warm-up + {meta['runs']} timed calls per batch size, median and p90; "
        "a pool of distinct inputs cycled; CUDA events on GPU",
        "",
    ]
    cpu = meta.get("cpu")
    if cpu:
        lines.insert(
            3,
            f"- CPU: {cpu['model']} (family {cpu['family']}, model {cpu['cpu_model']}, {cpu['mhz']} MHz nominal); "
            f"SIMD flags: {' '.join(cpu['simd_flags'])}",
        )
        peaks = []
        if meta.get("fp32_peak_gflops"):
            peaks.append(
                f"theoretical fp32 peak {meta['fp32_peak_gflops']:.0f} GFLOP/s ({meta['threads']} cores x "
                f"{cpu['mhz'] / 1000:.2f} GHz x {meta['fp32_flops_per_cycle']} FLOP/cycle)"
            )
        if meta.get("gemm_fp32_gflops"):
            peaks.append(
                f"measured GEMM ({meta.get('gemm_fp32_n', 4096)}^3, {meta['threads']} threads): fp32 "
                f"{meta['gemm_fp32_gflops']:.0f}, bf16 {meta['gemm_bf16_gflops']:.0f} GFLOP/s"
                + (f" (bf16 on {meta['gemm_bf16_n']}^3: emulated)" if meta.get("gemm_bf16_n", 4096) != 4096 else "")
            )
        if peaks:
            lines.insert(4, "- " + "; ".join(peaks))
    gpu = meta.get("gpu")
    if gpu and gpu.get("name"):
        lines.insert(
            3,
            f"- GPU: {gpu['name']} ({gpu['capability']}, {gpu['memory_gib']:.0f} GiB, {gpu['multiprocessors']} SMs); "
            f"driver {gpu['driver']}; CUDA {gpu['cuda']}; cuDNN {gpu['cudnn']}; torch {gpu['torch']}",
        )
    if meta.get("avx2_rows"):
        lines.insert(4, f"- AVX2: {meta['avx2_rows']}")
    for note in meta.get("notes", []):
        lines.append(f"> {note}")
    if meta.get("notes"):
        lines.append("")
    lines += _tests_lines(results.get("tests"))
    lines += _seed_lines(results.get("seed_table") or seed_table(results))
    by_arch: dict[str, list[dict]] = {}
    for c in results["cases"]:
        if c["case"]["task"] != "peak":
            by_arch.setdefault(c["case"]["architecture"], []).append(c)
    for arch, cases in by_arch.items():
        size = cases[0]["case"]["size"]
        lines += [f"## {arch} at {size[0]}x{size[1]}", ""]
        prep = next((c for c in cases if c["case"]["task"] == "prepare"), None)
        if prep and "class_histogram" in prep:
            shares = sorted(prep["class_histogram"], reverse=True)
            lines.append(
                f"Benchmark network: trained {prep['train_steps']} steps on the synthetic dead-leaves task. On the "
                f"held-out check images ({size[0]}x{size[1]}) its fp32 pixel accuracy is "
                f"{prep['check_pixel_accuracy']:.1%}, its argmax uses {sum(s > 0.001 for s in shares)} of "
                f"{prep['num_classes']} classes (largest share {shares[0]:.1%}), and one grey level of input noise "
                f"keeps {prep['noise_agreement']:.2%} of its labels."
            )
            lines.append("")
        infer = [c for c in cases if c["case"]["task"] == "infer"]
        gflop = prep.get("gflop_per_image") if prep else None
        if infer:
            if gflop:
                lines += [f"Work: {gflop:.1f} GFLOP per image at {size[0]}x{size[1]} (2 FLOP per multiply-add, "
                          "torch.utils.flop_counter).", ""]  # fmt: skip
            lines += [
                f"### Inference (peak memory: {mem_name})",
                "",
                "| library | path | batch | images/s | median ms | p90 ms | vs mmseg fp32 | peak mem | "
                "logits rel. diff | argmax agreement | GFLOP/s | % of fp32 peak | % of fp32 GEMM |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for c in infer:
                if "error" in c or "skipped" in c:
                    reason = c.get("error") or c.get("skipped")
                    lines.append(f"| {c['case']['library']} | {_path(c)} | | | | | | | | {reason} | | | |")
                    continue
                check = c.get("check")
                for batch, e in c["batches"].items():
                    rate = gflop * e["images_per_s"] if gflop and "reused_from" not in c else None
                    if "reused_from" in c and batch not in c.get("scaled_by", {}):
                        continue  # not carried over to this machine: not comparable, left out
                    lines.append(
                        f"| {c['case']['library']} | {_path(c)} | {batch} | {e['images_per_s']:.3g} | "
                        f"{1000 * e['median_s']:.1f} | {1000 * e['p90_s']:.1f} | {_x(e.get('speed_vs_mmseg_fp32'))} | "
                        f"{_gb(e['peak_mem_bytes'])} | "
                        + (f"{check['rel_diff']:.1e} | {100 * check['argmax_agreement']:.2f}% |" if check else "| |")
                        + f" {_num(rate)} | {_pct(rate, meta.get('fp32_peak_gflops'))} | "
                        f"{_pct(rate, meta.get('gemm_fp32_gflops'))} |"
                    )
            for c in infer:
                if c.get("auto_table"):
                    from deeplabv3p.deploy.backend_table import BackendTable

                    table = BackendTable.from_dict(c["auto_table"], cached=c.get("auto_cached", False))
                    title = (
                        f"What backend=auto measured (deeplabv3p.deploy.fastest, {c['case']['threads']} thread(s)); "
                        "the row above times its choice again:"
                    )
                    lines += ["", title, "", "```", *table.lines(), "```"]
            reused = [c for c in infer if "reused_from" in c]
            for source in sorted({c["reused_from"] for c in reused}):
                scales = sorted({f"{v:.3f}" for c in reused if c["reused_from"] == source
                                 for v in c.get("scaled_by", {}).values()})  # fmt: skip
                lines.append(
                    f"\nRows marked *estimated* are not measured here (those peers are not installed): they come from "
                    f"{source}, scaled by how our fp32 eager path compares between that run and this one "
                    f"(x{', x'.join(scales) or ' nothing: no fp32 eager row'}), i.e. assuming the peer keeps the speed "
                    "ratio to our fp32 eager path it had there (same network, same eager PyTorch kernels)."
                )
            lines.append("")
        train = [c for c in cases if c["case"]["task"] == "train"]
        if train:
            seed = next((c.get("seed_metrics") for c in cases if c.get("seed_metrics")), None) or {}
            lines += [
                f"### Training step (forward + backward + SGD, batch {train[0]['case']['batches'][0]}, "
                f"{size[0]}x{size[1]})",
                "",
                f"| library | precision | step s (median) | images/s | vs mmseg fp32 | {mem_name} "
                "| memory vs mmseg fp32 |",
                "|---|---|---|---|---|---|---|",
            ]
            for c in train:
                if "error" in c or "skipped" in c:
                    lines.append(f"| {c['case']['library']} | {_path(c)} | | | | | {c.get('error') or c['skipped']} |")
                    continue
                lines.append(
                    f"| {c['case']['library']} | {_path(c)} | {c['median_s']:.2f} | {c['images_per_s']:.3g} | "
                    f"{_x(c.get('speed_vs_mmseg_fp32'))} | {_gb(c['peak_mem_bytes'])} | "
                    f"{_x(c.get('memory_vs_mmseg_fp32'))} |"
                )
            if seed:
                lines.append("")
                lines.append(
                    f"Seed table (mmseg, {seed.get('fps_device', 'V100')}, SyncBN over 4 GPUs): "
                    f"Mem {seed.get('train_mem_gb')} GB at batch 2 per GPU, {seed.get('fps')} fps."
                )
            lines.append("")
        predict = [c for c in cases if c["case"]["task"] == "predict"]
        if predict:
            lines += [
                "### End-to-end predict (full-size image, the weights' test mode)",
                "",
                "| library | path | image | images/s | median s | vs mmseg fp32 |",
                "|---|---|---|---|---|---|",
            ]
            for c in predict:
                if "error" in c or "skipped" in c:
                    lines.append(f"| {c['case']['library']} | {_path(c)} | | | | {c.get('error') or c['skipped']} |")
                    continue
                h, w = c["image_size"]
                lines.append(
                    f"| {c['case']['library']} | {_path(c)} | {h}x{w} ({c['test_mode']}) | {c['images_per_s']:.3g} | "
                    f"{c['median_s']:.2f} | {_x(c.get('speed_vs_mmseg_fp32'))} |"
                )
            lines.append("")
        lines += paired_lines([c for c in cases if c["case"]["task"] == "pair"])
        folder = [c for c in cases if c["case"]["task"] == "folder"]
        if folder:
            base = next((c for c in folder if _ok(c) and not c["case"]["extra"].get("pipeline")), None)
            lines += [
                "### Folder prediction (full-size JPEG files to label PNGs, optimized model at dtype='auto')",
                "",
                "| pipeline | images | images/s | seconds | vs today's loop | peak mem |",
                "|---|---|---|---|---|---|",
            ]
            for c in folder:
                extra = c["case"]["extra"]
                name = (
                    f"workers {extra['workers']}, batch {extra['batch']}"
                    if extra.get("pipeline")
                    else "today's loop: model.predict(path), one at a time"
                )
                if "error" in c or "skipped" in c:
                    lines.append(f"| {name} | | | | | {c.get('error') or c['skipped']} |")
                    continue
                ratio = c["images_per_s"] / base["images_per_s"] if base and _ok(base) else None
                h, w = c["image_size"]
                lines.append(
                    f"| {name} | {c['images']} x {h}x{w} | {c['images_per_s']:.3g} | {c['seconds']:.1f} | "
                    f"{_x(ratio)} | {_gb(c['peak_mem_bytes'])} |"
                )
            lines.append("")
    targets = results.get("targets", [])
    if targets:
        lines += ["## Targets", "", *target_table(targets), ""]
    return "\n".join(lines)


def paired_lines(paired: list[dict]) -> list[str]:
    """The section of the ``pair`` cases of one model (none: no lines)."""
    if not paired:
        return []
    lines = [
        "### Paired timings (the targets' ratios)",
        "",
        "Each pair's two paths built in one process and timed alternately (A B, B A, ...) on the same inputs, so "
        "that the drift of a shared machine between rows measured minutes apart cancels out.",
        "",
        "| A | B | rounds | A median ms | B median ms | A's speed / B's (median of rounds) |",
        "|---|---|---|---|---|---|",
    ]
    for c in paired:
        a, b = c.get("labels") or c["label"].split(" vs ", 1)
        if not _ok(c):
            lines.append(f"| {a} | {b} | | | | {c.get('error') or c['skipped']} |")
            continue
        ms = [f"{1000 * t:.1f}" for t in c["median_s"]]
        lines.append(f"| {a} | {b} | {c['rounds']} | {ms[0]} | {ms[1]} | {c['speed_ratio']:.2f}x |")
    return [*lines, ""]


def target_table(targets: list[dict[str, Any]]) -> list[str]:
    """The markdown table of `evaluate_targets`' targets: each measured value a speed ratio unless the target
    gives its own wording (``measured``)."""
    lines = ["| model | target | path | measured | met |", "|---|---|---|---|---|"]
    for t in targets:
        extra = f", agreement {100 * t['agreement']:.2f}%" if "agreement" in t else ""
        if "paired_rounds" in t:
            extra = f" paired ({t['paired_rounds']} alternated rounds; the rows: {t['rows_value']:.2f}x){extra}"
        measured = t.get("measured", f"{t['value']:.2f}x{extra}")
        met = "yes" if t["met"] else "NO"
        lines.append(f"| {t['model']} | {t['target']} | {t['path']} | {measured} | {met} |")
    return lines


def _path(case: dict) -> str:
    """The case's label without the library name that has its own column; auto shows what it resolved to."""
    label = case["label"].removeprefix(case["case"]["library"]).strip()
    if case["case"]["dtype"] == "auto" and case.get("inference_dtype"):
        short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[case["inference_dtype"]]
        label = label.replace("auto", f"auto (= {short})", 1)
    if case.get("auto_chosen"):
        label += f" (= {case['auto_chosen']})"
    if "reused_from" in case:
        label += " *estimated*"
    return label


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _pct(value: float | None, of: float | None) -> str:
    return "" if value is None or not of else f"{100 * value / of:.0f}%"


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def main(argv: list[str]) -> int:
    write = "--write" in argv
    argv = [a for a in argv if a != "--write"]
    if len(argv) != 1:
        print("usage: python -m benchmarks.report RESULTS.json [--write]", file=sys.stderr)
        return 2
    path = Path(argv[0])
    results = json.loads(path.read_text())
    scale_reused(results)
    add_ratios(results)
    results["targets"] = evaluate_targets(results)
    results["seed_table"] = seed_table(results)
    text = render(results)
    print(text)
    if write:  # the JSON and Markdown again, e.g. after a change of the report
        write_atomic(path, json.dumps(results, indent=1) + "\n")
        write_atomic(path.with_suffix(".md"), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
