"""dtype="auto": bf16 only where the CPU or GPU computes it natively, fp16 on older GPUs, float32 elsewhere."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from parity import build

from deeplabv3p.inference import precision
from deeplabv3p.inference.optimize import optimize_for_inference

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_on_the_cpu_follows_native_bf16(monkeypatch, caplog, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    with caplog.at_level(logging.INFO, logger="deeplabv3p"):
        assert precision.resolve_dtype("auto", CPU) == expected
    assert "dtype='auto' on cpu" in caplog.text and ("bfloat16" if native else "float32") in caplog.text


def test_onednn_cap_below_bf16_means_no_native_bf16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not precision.cpu_has_native_bf16()
    assert precision.native_dtype(CPU) == torch.float32
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")
    hardware = any(f in precision.cpu_flags() for f in ("avx512_bf16", "amx_bf16"))
    assert precision.cpu_has_native_bf16() == hardware


def test_gpu_choice_follows_compute_capability(monkeypatch):
    for capability, expected in (((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index, c=capability: c)
        assert precision.native_dtype(torch.device("cuda", 0)) == expected


def test_explicit_dtypes_pass_and_fp16_on_cpu_is_refused():
    assert precision.resolve_dtype(None, CPU) is None and precision.resolve_dtype(torch.float32, CPU) is None
    assert precision.resolve_dtype(torch.bfloat16, CPU) == torch.bfloat16
    with pytest.raises(ValueError, match="float16 needs a GPU"):
        precision.resolve_dtype(torch.float16, CPU)


def test_emulated_names_the_device_and_the_measured_cost(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert "8.5 s under bf16" in str(precision.emulated(torch.bfloat16, CPU))
    assert "float16 needs a GPU" in str(precision.emulated(torch.float16, CPU))
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.emulated(torch.bfloat16, CPU) is None and precision.emulated(torch.float32, CPU) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Tesla T4")
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (7, 5))
    assert "(Tesla T4, sm_75) has no native bfloat16" in str(precision.emulated(torch.bfloat16, gpu))
    assert precision.emulated(torch.float16, gpu) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (8, 0))
    assert precision.emulated(torch.bfloat16, gpu) is None


def test_optimized_model_runs_in_its_inference_dtype(monkeypatch):
    model = build("r18_v1b_d8_slide")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = optimize_for_inference(model)(x)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    fast = optimize_for_inference(model, dtype="auto")
    assert fast.inference_dtype == torch.bfloat16 and model.inference_dtype is None
    with torch.inference_mode():
        out = fast(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, autocast, rtol=0, atol=0)  # the same computation as an explicit autocast
    assert (out - reference).abs().max() > 1e-5  # and really reduced precision
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    plain = model.optimize_for_inference(dtype="auto")
    assert plain.inference_dtype == torch.float32
    with torch.inference_mode():
        assert (plain(x) - reference).abs().max() <= 1e-4 * reference.abs().max()
    with pytest.raises(TypeError, match="deeplabv3p models"):
        optimize_for_inference(torch.nn.Conv2d(3, 3, 1), dtype=torch.bfloat16)


def test_predict_auto_resolves_per_device(monkeypatch):
    model = build("r18_v1b_d8_slide")
    image = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    np.testing.assert_array_equal(model.predict(image, dtype="auto", return_probs=True).probs,
                                  model.predict(image, return_probs=True).probs)  # fmt: skip
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    bf16 = model.predict(image, dtype="auto", return_probs=True).probs
    np.testing.assert_array_equal(bf16, model.predict(image, dtype=torch.bfloat16, return_probs=True).probs)
