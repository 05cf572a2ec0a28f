"""benchmarks/run.py's deployment rows: the ``backend=auto`` row and one row per installed deployment format in the
plan, the formats chosen with ``--formats``, and the target "auto within 5% of the fastest full-precision row"."""

from __future__ import annotations

import argparse
import time

import pytest

from benchmarks import adapters, report, run


def _args(*argv: str) -> argparse.Namespace:
    args = run.build_parser().parse_args(["--device", "cpu", "--tasks", "infer", "--compare", "onnxruntime", *argv])
    args.dtype, args.warmup, args.runs = "bf16", 1, 1
    return args


def test_the_plan_has_an_auto_row_and_a_row_per_deployment_format():
    args = _args()
    args.auto, args.deploy_formats = True, ("openvino", "ncnn")
    cases = [c for c in run.plan(args, ["deeplabv3plus_r18_d8"], ("onnxruntime",)) if c.task == "infer"]
    labels = [c.label for c in cases]
    assert {"ours fp32 backend=auto", "openvino fp32", "ncnn fp32", "onnxruntime fp32"} <= set(labels)
    assert {(c.library, c.dtype) for c in cases if c.dtype == "int8"} == {("onnxruntime", "int8"), ("openvino", "int8")}
    for case in cases:
        if case.extra.get("backend") == "auto" or case.library in ("openvino", "ncnn"):
            assert case.batches == (1,) and case.dtype == ("int8" if case.label == "openvino int8" else "fp32")
    args.auto, args.deploy_formats = False, ()
    labels = [c.label for c in run.plan(args, ["deeplabv3plus_r18_d8"], ("onnxruntime",))]
    assert not any("backend=auto" in label or label.startswith(("openvino", "ncnn")) for label in labels)


def test_formats_are_the_installed_deployment_formats(monkeypatch):
    assert "onnx" not in adapters.deploy_formats()  # ONNX has the onnxruntime peer's rows
    monkeypatch.setattr(adapters, "deploy_formats", lambda: ["here", "absent"])
    monkeypatch.setattr(adapters, "available", lambda name: (name == "here", f"{name} skipped: x not installed"))
    notes: list[str] = []
    assert run._deploy_formats("all", notes) == ("here",) and notes == ["absent skipped: x not installed"]
    assert run._deploy_formats("none", []) == ()
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown deployment format \['nope'\]"):
        run._deploy_formats("here,nope", [])


def _row(label: str, fps: float, agreement: float, **extra) -> dict:
    library, dtype = label.split()[:2]
    case = {"architecture": "a", "task": "infer", "library": library, "dtype": dtype}
    return {"case": case, "label": label, "batches": {"1": {"images_per_s": fps}},
            "check": {"argmax_agreement": agreement}, **extra}  # fmt: skip


def test_auto_is_held_to_within_5_percent_of_the_fastest_agreeing_fp32_row():
    rows = [
        _row("ours fp32", 1.0, 1.0),
        _row("onnxruntime fp32", 2.0, 1.0),
        _row("onnxruntime int8", 8.0, 0.97),  # not full precision: not the yardstick
        _row("ours fp32 backend=auto", 1.95, 1.0, auto_chosen="onnx"),
    ]
    (target,) = report._auto_targets("a", rows)
    assert target["met"] and target["value"] == pytest.approx(0.975) and "onnxruntime fp32" in target["target"]
    rows[-1]["batches"]["1"]["images_per_s"] = 1.8
    assert not report._auto_targets("a", rows)[0]["met"]
    rows[-1]["batches"]["1"]["images_per_s"] = 2.5  # the auto row is not its own yardstick
    (target,) = report._auto_targets("a", rows)
    assert target["value"] == pytest.approx(1.25) and "onnxruntime fp32" in target["target"]
    assert report._auto_targets("a", rows[:-1]) == []
    assert report._path({**rows[-1], "label": "ours fp32 backend=auto"}) == "fp32 backend=auto (= onnx)"


def _pair(a: str, b: str, ratio: float, rounds: int = 5) -> dict:
    case = {"architecture": "a", "task": "pair", "library": "ours", "dtype": "fp32"}
    return {"case": case, "label": f"{a} vs {b}", "labels": [a, b], "speed_ratio": ratio, "rounds": rounds,
            "median_s": [1.0, ratio]}  # fmt: skip


def test_a_target_is_decided_by_the_paired_timing_of_its_two_rows_when_the_run_made_one():
    rows = [
        _row("ours fp32", 1.0, 1.0),
        _row("openvino fp32", 2.0, 1.0),
        _row("ours fp32 backend=auto", 1.7, 1.0, auto_chosen="openvino"),  # the same runtime, timed minutes apart
    ]
    results = {"meta": {"models": ["a"], "device_type": "cpu"}, "cases": rows}
    (target,) = report.evaluate_targets(results)
    assert not target["met"] and target["value"] == pytest.approx(0.85) and "paired_rounds" not in target
    (wanted,) = report.speed_pairs(results)  # run.py times exactly these two alternately
    assert wanted == (rows[2]["case"], rows[1]["case"])

    results["cases"].append(_pair("ours fp32 backend=auto", "openvino fp32", 0.99))
    (target,) = report.evaluate_targets(results)
    assert target["met"] and target["value"] == 0.99 and target["rows_value"] == pytest.approx(0.85)
    assert report.speed_pairs(results) == []  # nothing left to pair
    (line,) = report.target_table([target])[2:]
    assert "| 0.99x paired (5 alternated rounds; the rows: 0.85x), agreement 100.00% | yes |" in line
    assert "| ours fp32 backend=auto | openvino fp32 | 5 | 1000.0 | 990.0 | 0.99x |" in report.paired_lines(
        results["cases"][-1:]
    )


def test_pair_cases_time_both_rows_at_batch_1_with_at_least_one_warm_up_call(monkeypatch):
    a = {"architecture": "a", "task": "infer", "library": "ours", "dtype": "fp32", "size": [32, 64],
         "device": "cpu", "threads": 2, "workdir": "w", "train_steps": 3, "seed": 0, "batches": [1, 2]}  # fmt: skip
    b = dict(a, library="openvino")
    results = {"meta": {"models": ["a"], "device_type": "cpu"}, "cases": []}
    monkeypatch.setattr(report, "speed_pairs", lambda r: [(a, b)])
    (case,) = run.pair_cases(results, rounds=4, warmup=0)
    assert case.task == "pair" and case.runs == 4 and case.warmup == 1 and case.size == (32, 64)
    assert [p["batches"] for p in case.extra["pair"]] == [[1], [1]] and case.label == "ours fp32 vs openvino fp32"


def test_a_pair_is_built_and_timed_alternately_in_one_process(tmp_path):
    import statistics
    from dataclasses import asdict

    from benchmarks.worker import Case, prepare, run_pair

    common = dict(architecture="deeplabv3plus_r18_d8", size=(32, 64), workdir=str(tmp_path), train_steps=0)
    prepare(Case(task="prepare", library="ours", **common))
    a = asdict(Case(task="infer", library="ours", dtype="fp32", **common))
    b = asdict(Case(task="infer", library="ours", dtype="fp32", optimize=True, **common))
    result = run_pair(Case(task="pair", library="ours", warmup=1, runs=3, extra={"pair": [a, b]}, **common))
    assert result["labels"] == ["ours fp32", "ours fp32 fold+cl"] and result["rounds"] == 3
    assert all(len(t) == 3 and min(t) > 0 for t in result["times_s"])
    assert result["speed_ratio"] == statistics.median(tb / ta for ta, tb in zip(*result["times_s"]))
    assert result["auto_chosen"] == [None, None]


def test_a_pair_alternates_its_paths_and_its_ratio_says_how_many_times_faster_a_runs(monkeypatch):
    """A path 3x as fast as the other gives a ratio near 3 (not 1/3), whichever runs first in a round."""
    from types import SimpleNamespace

    from benchmarks import worker

    order: list[str] = []

    def path(case):
        def call(x):
            order.append(case.library)
            time.sleep(0.01 if case.library == "fast" else 0.03)

        return call, None

    monkeypatch.setattr(worker, "_runner", lambda torch, case: SimpleNamespace(extra={}))
    monkeypatch.setattr(worker, "_inference_call", lambda torch, case, runner: path(case))
    one = {"task": "infer", "library": "fast", "architecture": "a", "size": [8, 8]}
    case = worker.Case(task="pair", library="ours", architecture="a", size=(8, 8), warmup=1, runs=4,
                       extra={"pair": [one, dict(one, library="slow")]})  # fmt: skip
    result = worker.run_pair(case)
    assert order == ["fast", "slow"] + ["fast", "slow", "slow", "fast"] * 2  # warm-ups, then A B, B A, ...
    assert 2.0 < result["speed_ratio"] < 4.0 and result["labels"] == ["fast fp32", "slow fp32"]


def test_a_pair_whose_auto_path_ran_another_backend_does_not_decide_the_target():
    rows = [_row("openvino fp32", 2.0, 1.0), _row("ours fp32 backend=auto", 1.7, 1.0, auto_chosen="openvino")]
    pair = {**_pair("ours fp32 backend=auto", "openvino fp32", 0.99), "auto_chosen": ["onnx", None]}
    results = {"meta": {"models": ["a"], "device_type": "cpu"}, "cases": [*rows, pair]}
    (target,) = report.evaluate_targets(results)
    assert "paired_rounds" not in target and target["value"] == pytest.approx(0.85)
    pair["auto_chosen"] = ["openvino", None]
    assert report.evaluate_targets(results)[0]["value"] == 0.99
