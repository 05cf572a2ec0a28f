"""The benchmark's own machinery: statistics, inputs, target evaluation, the mmcv.ops stand-in. No timing here."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from benchmarks import adapters, report
from benchmarks.inputs import dead_leaves, image_batches, labelled_batch, palette
from benchmarks.timing import MAX_POOL, Stats, pool_size


def test_stats_median_and_p90():
    stats = Stats.of([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert stats.runs == 10 and stats.median_s == 5.5 and stats.p90_s == 9.0 and stats.min_s == 1.0
    assert Stats.of([2.0]).p90_s == 2.0
    with pytest.raises(ValueError):
        Stats.of([])


def test_input_pool_exceeds_cache():
    assert pool_size(6 * 2**20) * 6 * 2**20 >= 96 * 2**20
    assert pool_size(1) == MAX_POOL and pool_size(2**40) == 2


def test_dead_leaves_is_deterministic_and_labelled():
    image, labels = dead_leaves(48, 80, seed=3)
    again, _ = dead_leaves(48, 80, seed=3)
    other, _ = dead_leaves(48, 80, seed=4)
    assert image.shape == (48, 80, 3) and image.dtype == np.uint8 and labels.shape == (48, 80)
    assert np.array_equal(image, again) and not np.array_equal(image, other)
    assert len(np.unique(labels)) >= 5
    # Each pixel's colour is near its class colour (jitter and noise are small against the palette's spread).
    colours = palette(19)
    nearest = np.linalg.norm(image[..., None, :].astype(np.float32) - colours, axis=-1).argmin(-1)
    assert (nearest == labels).mean() > 0.8
    x, y = labelled_batch(32, 64, batch=2, seed=0)
    assert x.shape == (2, 3, 32, 64) and x.dtype == torch.float32 and y.shape == (2, 32, 64) and y.max() < 19
    batches = image_batches(32, 64, batch=2, count=3, seed=0)
    assert [tuple(b.shape) for b in batches] == [(2, 3, 32, 64)] * 3 and torch.equal(batches[0], x)


def _infer(library: str, dtype: str, fps: float, agreement: float | None = None, compiled: bool = False) -> dict:
    case = {"architecture": "a", "task": "infer", "library": library, "dtype": dtype, "channels_last": False,
            "compile": compiled}  # fmt: skip
    result = {"case": case, "label": f"{library} {dtype}", "batches": {"1": {"images_per_s": fps}}}
    if agreement is not None:
        result["check"] = {"argmax_agreement": agreement}
    return result


def test_targets_use_the_fastest_path_that_agrees():
    results = {
        "meta": {"device_type": "cpu", "models": ["a"]},
        "cases": [
            _infer("mmseg", "fp32", 1.0, 1.0),
            _infer("ours", "fp32", 1.2, 1.0),
            _infer("ours", "bf16", 2.7, 0.996),
            _infer("ours", "bf16", 4.0, 0.99, compiled=True),  # faster but disagrees: not eligible
        ],
    }
    report.add_ratios(results)
    assert results["cases"][2]["batches"]["1"]["speed_vs_mmseg_fp32"] == pytest.approx(2.7)
    speed, fp32, vs_mmseg = report.evaluate_targets(results)
    assert speed["value"] == pytest.approx(2.7) and speed["met"] and speed["agreement"] == 0.996
    assert fp32["value"] == pytest.approx(1.2) and fp32["met"]
    assert vs_mmseg["target"].startswith("best path >= 2.0x") and vs_mmseg["met"]
    results["cases"][2]["batches"]["1"]["images_per_s"] = 2.4
    assert not report.evaluate_targets(results)[0]["met"]
    results["cases"].append(_infer("onnxruntime", "fp32", 2.25, 1.0))  # ours 2.4 is 1.07x of it: not 1.1x
    vs_ort = report.evaluate_targets(results)[-1]
    assert vs_ort["target"].startswith("best path >= 1.1x onnxruntime") and not vs_ort["met"]
    assert vs_ort["value"] == pytest.approx(2.4 / 2.25)


def test_reused_rows_are_carried_to_this_machines_speed():
    ours = _infer("ours", "fp32", 0.15)
    ours["case"].update(optimize=False)
    reused = {**_infer("mmseg", "fp32", 0.32), "reused_from": "old.json", "reused_reference": {"1": 0.33}}
    reused["batches"]["1"]["median_s"] = 1 / 0.32
    results = {"meta": {"device_type": "cpu", "models": ["a"]}, "cases": [ours, reused]}
    report.scale_reused(results)
    report.scale_reused(results)  # once only
    entry = reused["batches"]["1"]
    assert entry["images_per_s"] == pytest.approx(0.32 * 0.15 / 0.33) and entry["reused_images_per_s"] == 0.32
    assert entry["median_s"] == pytest.approx(1 / entry["images_per_s"])
    assert reused["scaled_by"] == {"1": pytest.approx(0.15 / 0.33)}


def test_report_renders_flop_rates_estimated_rows_and_folder_runs():
    prepare = {"case": {"architecture": "a", "task": "prepare", "library": "ours", "size": [8, 16], "dtype": "fp32"},
               "label": "ours fp32", "gflop_per_image": 10.0}  # fmt: skip
    auto = _infer("ours", "auto", 2.0, 0.999)
    auto["case"]["size"], auto["inference_dtype"] = [8, 16], "bfloat16"
    auto["batches"]["1"].update(median_s=0.5, p90_s=0.6, peak_mem_bytes=2**30)
    auto["check"]["rel_diff"] = 0.01
    reused = {**_infer("mmseg", "fp32", 1.0, 1.0), "reused_from": "old.json (2026-11-24 01:18 UTC, X)",
              "scaled_by": {"1": 0.5}}  # fmt: skip
    reused["batches"]["1"].update(median_s=1.0, p90_s=1.1, peak_mem_bytes=2**30)
    reused["check"]["rel_diff"] = 0.0
    folder = [
        {"case": {"architecture": "a", "task": "folder", "library": "ours", "dtype": "auto", "extra": extra},
         "label": "ours auto", "images": 4, "image_size": [32, 64], "seconds": s, "images_per_s": 4 / s,
         "peak_mem_bytes": 2**30}
        for extra, s in (({"pipeline": False}, 8.0), ({"pipeline": True, "workers": 1, "batch": 2}, 5.0))
    ]  # fmt: skip
    meta = {"device_name": "cpu", "date": "d", "threads": 2, "dtype": "bf16", "loadavg_start": [0, 0, 0],
            "loadavg_end": [0, 0, 0], "cpu_count": 2, "versions": {}, "command": "c", "warmup": 1, "runs": 1,
            "device_type": "cpu", "models": ["a"], "fp32_peak_gflops": 40.0, "gemm_fp32_gflops": 25.0,
            "gemm_bf16_gflops": 50.0, "fp32_flops_per_cycle": 32,
            "cpu": {"model": "M", "family": "25", "cpu_model": "17", "mhz": 2600.0,
                    "simd_flags": ["avx2"]}}  # fmt: skip
    results = {"meta": meta, "cases": [prepare, reused, auto, *folder]}
    report.add_ratios(results)
    text = report.render(results)
    assert "| ours | auto (= bf16) | 1 | 2 |" in text and "| 2.00x |" in text
    assert "| 20 | 50% | 80% |" in text  # 10 GFLOP x 2 images/s against the 40 and 25 GFLOP/s peaks
    assert "| mmseg | fp32 *estimated* |" in text and "old.json (2026-11-24" in text and "(x0.500)" in text
    assert "| workers 1, batch 2 | 4 x 32x64 | 0.8 | 5.0 | 1.60x |" in text
    targets = report.evaluate_targets(results)
    assert targets[-1]["target"].endswith("(mmseg fp32 estimated from an earlier run)")


def test_mmcv_ops_stand_in(monkeypatch):
    monkeypatch.delitem(sys.modules, "mmcv.ops", raising=False)
    monkeypatch.setitem(sys.modules, "mmcv", None)  # no mmcv at all: the real import fails, the stand-in goes in
    adapters._install_mmcv_ops_shim()
    shim = sys.modules["mmcv.ops"]
    assert not hasattr(shim, "__file__")
    with pytest.raises(RuntimeError, match="mmcv-lite"):
        shim.point_sample(None, None)
    with pytest.raises(ModuleNotFoundError, match="nms"):
        shim.nms  # noqa: B018
    monkeypatch.delitem(sys.modules, "mmcv.ops")


def test_seed_rows():
    cfg = adapters.seed_cfg("deeplabv3plus_r50_d8")
    assert cfg.crop_size == (512, 1024) and cfg.metrics["train_mem_gb"] == 7.5 and cfg.metrics["fps"] == 3.94
    with pytest.raises(ValueError, match="seven mmseg models"):
        adapters.seed_cfg("deeplabv3plus")


def test_int8_targets_name_each_int8_row_and_compare_the_best_that_keeps_the_labels():
    eager = _infer("ours", "fp32", 1.0, 1.0)
    eager["case"]["optimize"] = False
    cases = [eager, _infer("onnxruntime", "int8", 3.0, 0.97), _infer("openvino", "int8", 2.0, 0.998)]
    results = {"meta": {"device_type": "cpu", "models": ["a"]}, "cases": cases}
    ort, ov = report.evaluate_targets(results)  # no mmseg row: agreement only
    assert (ort["met"], ort["value"], ort["path"]) == (False, 0.97, "onnxruntime int8, 3.00x our fp32 eager")
    assert ov["met"] and ov["target"].startswith("INT8 labels >= 99.5% equal")
    row = report.target_table([ort])[-1]  # an agreement is shown as one, not as a speed ratio
    assert row.endswith("| onnxruntime int8, 3.00x our fp32 eager | 97.00% of the labels | NO |")
    results["cases"].append(_infer("mmseg", "fp32", 0.5, 1.0))
    vs_mmseg = [t for t in report.evaluate_targets(results) if t["target"].startswith("best INT8")]
    assert len(vs_mmseg) == 1 and vs_mmseg[0]["path"] == "openvino int8"  # the faster ORT row loses labels
    assert vs_mmseg[0]["value"] == pytest.approx(4.0) and vs_mmseg[0]["met"]


def test_cached_exports_are_named_after_what_they_are_made_from(tmp_path, monkeypatch):
    """A change to the exporter's source, the weights or a runtime's version names a new file, so the benchmark never
    times an export or INT8 copy made by older code."""
    package = tmp_path / "deeplabv3p"
    for sub in ("models", "deploy"):
        (package / sub).mkdir(parents=True)
        (package / sub / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(adapters.deeplabv3p, "__file__", str(package / "__init__.py"))
    weights = tmp_path / "net.safetensors"
    weights.write_bytes(b"w" * 10)

    def name(*packages: str) -> str:
        path = adapters.cached_artifact(tmp_path, "r50_512x1024", ".int8.onnx", weights, packages)
        assert path.parent == tmp_path and path.name.startswith("r50_512x1024-") and path.name.endswith(".int8.onnx")
        return path.name

    first = name("onnxruntime")
    assert name("onnxruntime") == first  # the same inputs: the cached file is found again
    assert name("onnxruntime", "pytest") != first  # another runtime (version) in the key
    (package / "deploy" / "a.py").write_text("x = 2\n")  # the quantizer changed
    changed = name("onnxruntime")
    assert changed != first
    weights.write_bytes(b"w" * 11)  # other weights
    assert name("onnxruntime") not in (first, changed)
