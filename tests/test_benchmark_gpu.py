"""The GPU preset (`benchmarks/gpu.sh`, issue 22): its CPU dry run end to end, its plan, its budget and its table
against the seed. The dry run is the same script at tiny sizes, so it cannot rot between GPU visits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu, report, run
from benchmarks.inputs import _training_batches, labelled_batch
from benchmarks.worker import Case

ROOT = Path(__file__).resolve().parents[1]
SEVEN = run.MMSEG_ARCHITECTURES


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_dry_run_writes_every_row_with_finite_numbers_and_the_seed_column(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    # --compare none: the rows below must not depend on which peers (mmseg, TensorRT) this machine has
    command = ["bash", "benchmarks/gpu.sh", "--device", "cpu", "--dry-run", "--out", str(tmp_path),
               "--workdir", str(tmp_path / "work"), "--name", "dry", "--compare", "none"]  # fmt: skip
    started = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "dry.json").read_text())
    meta = results["meta"]
    assert meta["preset"] == "gpu, dry run" and meta["device_type"] == "cpu"
    assert 480 - (time.time() - started) <= meta["budget_s"] <= 480  # gpu.sh's own time counts against it
    assert set(meta["gpu"]) >= {"name", "driver", "cuda", "cudnn", "torch", "capability", "memory_gib"}
    assert meta["seed"]["deeplabv3plus_r18_d8"]["fps"] == 14.27

    tests = results["tests"]  # pytest -m gpu: on the CPU every CUDA test is collected and skipped
    assert tests["command"] == "pytest -m gpu tests/train/test_trainer_cuda.py" and tests["returncode"] == 0
    assert tests["counts"].get("skipped", 0) >= 2 and "failed" not in tests["counts"], tests["summary"]
    assert (tmp_path / tests["log"]).is_file()

    expected = [("prepare", "ours fp32"), ("infer", "ours fp32"), ("train", "ours bf16"),
                ("folder", "ours auto fold+cl"), ("folder", "ours auto fold+cl"), ("infer", "ours bf16 fold+cl"),
                ("train", "ours fp32")]  # fmt: skip
    cases = results["cases"]
    assert [(c["case"]["task"], c["label"]) for c in cases] == expected
    assert not [c for c in cases if "error" in c or "skipped" in c]
    for c in cases:
        task = c["case"]["task"]
        if task == "infer":
            entry = c["batches"]["1"]
            assert _finite(entry["images_per_s"]) and _finite(entry["peak_mem_bytes"]) and c["case"]["size"] == [32, 64]
            assert 0 <= c["check"]["argmax_agreement"] <= 1
        elif task == "train":
            assert _finite(c["median_s"]) and _finite(c["peak_mem_bytes"]) and c["batch"] == 2
        elif task == "folder":
            assert _finite(c["images_per_s"]) and c["images"] == 2 and c["image_size"] == [32, 64]
    assert [c["case"]["extra"].get("workers") for c in cases if c["case"]["task"] == "folder"] == [None, 1]

    (row,) = results["seed_table"]
    assert row["model"] == "deeplabv3plus_r18_d8" and row["infer_size"] == [32, 64]
    assert (row["seed_fps"], row["seed_fps_device"], row["seed_mem_gb"]) == (14.27, "V100", 2.2)
    for key in ("fp32_fps", "bf16_fps", "train_amp_peak_gb", "train_fp32_peak_gb", "amp_mem_vs_seed"):
        assert _finite(row[key]), key
    assert row["fp16_fps"] is None  # no fp16 on the CPU
    text = (tmp_path / "dry.md").read_text()
    assert "## GPU tests: `pytest -m gpu tests/train/test_trainer_cuda.py`" in text
    assert "## Against the seed table" in text and "| deeplabv3plus_r18_d8 | 14.3 |" in text
    assert "(not comparable: measured here at another size)" in text


def test_plan_runs_in_order_of_value() -> None:
    cases = gpu.plan(gpu.FULL, "cuda", ("mmseg",), Path("work"))
    steps = [(c.task, c.library, c.dtype, c.compile) for c in cases]
    first = [("prepare", "ours", "fp32", False), ("infer", "ours", "fp32", False), ("infer", "ours", "fp16", False)]
    assert steps[:21] == first * 7 and [c.architecture for c in cases[:21:3]] == list(SEVEN)
    assert all(c.size == (1024, 2048) and c.batches == (1,) for c in cases[:21] if c.task == "infer")
    train = cases[21:28]
    assert all(c.task == "train" and c.dtype == "fp16" and c.batches == (2,) for c in train)
    assert [c.size for c in train] == [(512, 1024)] * 7  # the seed's crop of each of the seven rows
    (compiled,) = [c for c in cases if c.compile]
    assert cases[28] is compiled and compiled.architecture == "deeplabv3plus_r50_d8" and compiled.dtype == "fp16"
    folder = cases[29:32]
    assert all(c.task == "folder" and c.architecture == "deeplabv3plus_r18_d8" for c in folder)
    assert [c.extra.get("workers") for c in folder] == [None, 0, 4] and folder[0].predict_size == (1024, 2048)
    rest = cases[32:]
    assert [(c.task, c.library, c.dtype) for c in rest[:2]] == [("infer", "ours", "bf16"), ("infer", "mmseg", "fp32")]
    assert [(c.task, c.library) for c in rest[-2:]] == [("train", "ours"), ("train", "mmseg")]
    assert len(rest) == 28 and not [c for c in gpu.plan(gpu.FULL, "cuda", (), Path("w")) if c.library == "mmseg"]


def test_training_images_drawn_ahead_are_the_same_batches() -> None:
    batches = list(_training_batches((32, 48), batch=3, steps=2, seed=7))
    assert len(batches) == 2 and not list(_training_batches((32, 48), batch=3, steps=0, seed=7))
    for step, (x, y) in enumerate(batches):
        expected_x, expected_y = labelled_batch(32, 48, batch=3, seed=7 + 3 * step)
        assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_refuses_a_cpu_run_that_is_not_a_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--device", "cpu"]) == 2
    assert "--device cpu is for --dry-run" in capsys.readouterr().err


def test_a_spent_budget_records_the_rest_as_not_started_and_saves_after_each() -> None:
    cases = [Case(task="infer", library="ours", architecture=a, size=(32, 64)) for a in SEVEN[:3]]
    results: dict = {"meta": {}, "cases": []}
    saved = []
    run.run_cases(cases, {}, results, lambda r: saved.append(len(r["cases"])), deadline=time.time() + 1)
    assert saved == [1, 2, 3]
    assert [c["skipped"] for c in results["cases"]] == ["not started: the run's time budget was spent"] * 3
    assert [c["case"]["architecture"] for c in results["cases"]] == list(SEVEN[:3])


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_process_past_its_time_is_stopped_with_its_children() -> None:
    child = "import subprocess, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"
    started = time.time()
    code, stdout, _ = run.run_process([sys.executable, "-c", child], dict(os.environ), timeout=3)
    assert code is None and time.time() - started < 30
    deadline = time.time() + 10
    while _running(int(stdout.split()[0])) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(int(stdout.split()[0]))
    assert run.run_process([sys.executable, "-c", "print('ok')"], dict(os.environ), timeout=60) == (0, "ok\n", "")


def test_tests_stopped_past_their_share_keep_what_finished(tmp_path: Path) -> None:
    tests = tmp_path / "test_stops.py"
    tests.write_text(
        "import time, pytest\npytestmark = pytest.mark.gpu\n"
        "def test_a(): pass\ndef test_b(): assert False\ndef test_c(): time.sleep(120)\n"
    )
    log = tmp_path / "log.txt"
    result = gpu.run_tests((str(tests), "-c", os.devnull, "-p", "no:warnings"), 10, log, run.worker_env())
    assert result["returncode"] is None and result["summary"].startswith("stopped after 10 s")
    assert result["counts"] == {"passed": 1, "failed": 1} and result["stopped_in"].endswith("::test_c")
    assert [f.split("::")[-1] for f in result["failures"]] == ["test_b"] and "test_b FAILED" in log.read_text()


def _infer(arch: str, dtype: str, fps: float, size: list[int], optimize: bool = True, agreement: float = 1.0) -> dict:
    case = {"architecture": arch, "task": "infer", "library": "ours", "dtype": dtype, "optimize": optimize,
            "compile": False, "channels_last": False, "size": size}  # fmt: skip
    label = f"ours {dtype}" + (" fold+cl" if optimize else "")
    batches = {"1": {"images_per_s": fps, "median_s": 1 / fps, "p90_s": 1 / fps, "peak_mem_bytes": 2**30}}
    return {"case": case, "label": label, "batches": batches, "check": {"argmax_agreement": agreement, "rel_diff": 0.0}}


def test_table_and_targets_against_the_seed_on_the_gpu() -> None:
    arch = "deeplabv3plus_r50_d8"
    train = {"case": {"architecture": arch, "task": "train", "library": "ours", "dtype": "fp16", "grad_ckpt": False,
                       "batches": [2], "size": [512, 1024], "optimize": False, "compile": False},
             "label": "ours fp16", "peak_mem_bytes": 6 * 2**30, "median_s": 0.1, "images_per_s": 20.0}  # fmt: skip
    cases = [_infer(arch, "fp32", 5.0, [1024, 2048], optimize=False), _infer(arch, "fp16", 9.0, [1024, 2048]),
             _infer(arch, "bf16", 12.0, [1024, 2048], agreement=0.9), train]  # fmt: skip
    meta = {"device_type": "cuda", "models": [arch], "seed": {arch: {"fps": 3.94, "train_mem_gb": 7.5}}}
    results = {"meta": meta, "cases": cases}
    (row,) = report.seed_table(results)
    assert row["best_path"] == "ours fp16 fold+cl"  # bf16 is faster but its argmax disagrees
    assert row["best_vs_seed"] == pytest.approx(9.0 / 3.94) and row["fp16_vs_fp32"] == pytest.approx(1.8)
    assert row["amp_mem_vs_seed"] == pytest.approx(6 / 7.5)
    fps, fp16, memory = report.evaluate_targets(results)
    assert fps["met"] and "(3.94, V100) at 1024x2048" in fps["target"]
    assert fp16["met"] and fp16["value"] == pytest.approx(1.8) and memory["met"]
    train["peak_mem_bytes"] = 8 * 2**30
    cases[1]["batches"]["1"]["images_per_s"] = 7.0
    assert [t["met"] for t in report.evaluate_targets(results)] == [True, False, False]
    for c in cases[:3]:
        c["case"]["size"] = [512, 1024]  # not where the seed measured its fps: no fps target
    assert [t["target"].split()[0] for t in report.evaluate_targets(results)] == ["fp16", "AMP"]

    gpu_stamp = {"name": "NVIDIA H100 80GB HBM3", "capability": "sm_90", "memory_gib": 79.2, "multiprocessors": 132,
                 "driver": "580.159.04", "cuda": "13.0", "cudnn": 91300, "torch": "2.11.0+cu130"}  # fmt: skip
    meta.update(device_name="H100", date="d", threads=16, dtype="fp16", loadavg_start=[0, 0, 0], gpu=gpu_stamp,
                loadavg_end=[0, 0, 0], cpu_count=16, versions={}, command="c", warmup=5, runs=20)  # fmt: skip
    text = report.render(results)
    assert "- GPU: NVIDIA H100 80GB HBM3 (sm_90, 79 GiB, 132 SMs); driver 580.159.04; CUDA 13.0; cuDNN 91300" in text
    assert "| deeplabv3plus_r50_d8 | 3.94 | 5 | 7 | 12 |  |  | 1.78x | 1.40x | 8 | 7.5 | 1.07x |" in text


def test_tensorrt_row_follows_the_compiled_one_where_tensorrt_is_compared() -> None:
    cases = gpu.plan(gpu.FULL, "cuda", ("mmseg", "tensorrt"), Path("work"))
    engine = cases[29]
    assert cases[28].compile and (engine.library, engine.dtype, engine.task) == ("tensorrt", "fp16", "infer")
    assert (
        engine.architecture == "deeplabv3plus_r50_d8"
        and engine.size == (1024, 2048)
        and engine.label == "tensorrt fp16"
    )
    assert [c for c in cases if c.library == "tensorrt"] == [engine]
    assert cases[:29] + cases[30:] == gpu.plan(gpu.FULL, "cuda", ("mmseg",), Path("work"))
    assert not [c for c in gpu.plan(gpu.DRY_RUN, "cpu", ("tensorrt",), Path("w")) if c.library == "tensorrt"]


def test_tensorrt_target_against_our_fp16_eager_path() -> None:
    arch = "deeplabv3plus_r50_d8"
    engine = _infer(arch, "fp16", 20.0, [1024, 2048], optimize=False, agreement=0.997)
    engine["case"]["library"], engine["label"] = "tensorrt", "tensorrt fp16"
    cases = [_infer(arch, "fp32", 5.0, [1024, 2048], optimize=False), _infer(arch, "fp16", 9.0, [1024, 2048]), engine]
    results = {"meta": {"device_type": "cuda", "models": [arch], "seed": {}}, "cases": cases}
    (target,) = [t for t in report.evaluate_targets(results) if t["path"] == "tensorrt fp16"]
    assert target["value"] == pytest.approx(20 / 9) and target["met"] and "2.0x our fp16 eager" in target["target"]
    engine["check"]["argmax_agreement"] = 0.99  # fast but its labels moved: not met
    assert not next(t for t in report.evaluate_targets(results) if t["path"] == "tensorrt fp16")["met"]
    engine["batches"]["1"]["images_per_s"] = 17.0
    engine["check"]["argmax_agreement"] = 0.999
    assert not next(t for t in report.evaluate_targets(results) if t["path"] == "tensorrt fp16")["met"]


def test_the_tensorrt_adapter_refuses_the_cpu() -> None:
    from benchmarks import adapters

    with pytest.raises(ValueError, match="TensorRT runs on a CUDA GPU only"):
        adapters.build("tensorrt", "deeplabv3plus_r18_d8", Path("w.safetensors"), torch.device("cpu"), 1, Path("w"))
