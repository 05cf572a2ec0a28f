"""benchmarks/run.py's deployment rows: the ``backend=auto`` row and one row per installed deployment format in the
plan, the formats chosen with ``--formats``, and the target "auto within 5% of the fastest full-precision row"."""

from __future__ import annotations

import argparse

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
