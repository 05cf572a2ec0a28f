"""`deeplabv3p.deploy.fastest`: the fastest backend that agrees with PyTorch fp32 is chosen, the decision is cached
per machine, threads, model and size, and bad arguments fail before any work.

Fake formats (registered in `FORMATS` for one test) stand in for runtimes: a fast one (it replays the logits it
computed once), a slow one (it sleeps) and a fast one that disagrees (it shifts one class's logits)."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from nets import narrow_model, randomize_bn

from deeplabv3p.deploy import backend_cache, fastest, selection
from deeplabv3p.deploy.backend import DeployedBackend
from deeplabv3p.deploy.backend_names import EAGER, FOLDED
from deeplabv3p.deploy.formats import FORMATS, Format
from deeplabv3p.deploy.metadata import read_sidecar, sidecar, to_json
from deeplabv3p.deploy.proof import ExportCheckError
from deeplabv3p.fields import check_file

SIZE = (64, 64)


@pytest.fixture(scope="module")
def model():
    return randomize_bn(narrow_model(num_classes=5, deep_stem=True).eval())


class FakeSegmenter(DeployedBackend):
    """A stand-in runtime: the model's own logits, computed once per input and replayed (so it is fast), after
    `delay` seconds, with `offset` added to class 0 (so its labels disagree)."""

    name = "fake"

    def __init__(self, path, *, threads=None, network=None, delay=0.0, offset=0.0, static=False):
        path = check_file("fake file", path)
        self._setup(path, read_sidecar(path), config=None, pretrained_cfg=None, threads=threads)
        h, w = SIZE if static else (-1, -1)
        self._check_shapes([1, self.config.in_chans, h, w], [1, self.config.num_classes, h, w])
        self.network, self.delay, self.offset, self.memo = network, delay, offset, {}

    def run(self, x: np.ndarray) -> np.ndarray:
        key = (x.shape, x.tobytes())
        if key not in self.memo:
            with torch.inference_mode():
                self.memo[key] = self.network(torch.from_numpy(x)).numpy()
        time.sleep(self.delay)
        out = self.memo[key].copy()
        out[:, 0] += self.offset
        return out


def fake_write(model, path: Path, *, input_size, dynamic, **options) -> None:
    path.write_bytes(b"fake export")
    sidecar(path).write_text(to_json(model), encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class FakeFormat(Format):
    network: torch.nn.Module | None = None
    delay: float = 0.0
    offset: float = 0.0
    static: bool = False

    def write_function(self):
        return fake_write

    def load_function(self):
        kwargs = dict(network=self.network, delay=self.delay, offset=self.offset, static=self.static)
        return functools.partial(FakeSegmenter, **kwargs)


def fake(name: str, network, **kwargs) -> FakeFormat:
    fields = dict(suffix=f".{name}", extra=name, export_packages=(), run_packages=(), writer="-", loader="-")
    return FakeFormat(name=name, runs_on_cpu=True, summary=f"fake {name}", network=network, **{**fields, **kwargs})


@pytest.fixture
def fakes(monkeypatch, model):
    """Three fake runtimes in FORMATS: fast, slow (0.1 s a call) and wrong (fast, class 0 everywhere)."""
    for f in (fake("fast", model), fake("slow", model, delay=0.1), fake("wrong", model, offset=1e3)):
        monkeypatch.setitem(FORMATS, f.name, f)
    return ["fast", "slow", "wrong"]


def count_timings(monkeypatch) -> list[str]:
    """Record the backends `fastest` times from now on."""
    calls: list[str] = []
    real = selection.time_calls

    def counted(call, x, warmup, runs):
        calls.append(type(call).__name__)
        return real(call, x, warmup, runs)

    monkeypatch.setattr(selection, "time_calls", counted)
    return calls


def test_the_fastest_agreeing_backend_is_chosen(model, fakes, tmp_path):
    segmenter, table = fastest(model, SIZE, formats=fakes, threads=1, runs=2, cache_root=tmp_path)
    assert [r.name for r in table.rows][:2] == [EAGER, FOLDED] and [r.name for r in table.rows][-3:] == fakes
    assert table.chosen == "fast" and isinstance(segmenter, FakeSegmenter) and segmenter.offset == 0
    assert segmenter.threads == 1 and segmenter.path.parents[2] == tmp_path / "backends"
    fast, slow, wrong = (table.row(n) for n in fakes)
    assert fast.kept and fast.labels == 1.0 and fast.ms < slow.ms and slow.kept and slow.ms >= 100
    assert not wrong.kept and wrong.labels < 0.5 and "outside the bound" in wrong.why and wrong.ms < slow.ms
    assert table.row(EAGER).why == "reference" and table.speedup(EAGER) == 1.0
    printed = str(table)
    assert "fast" in printed and "<- chosen" in printed.splitlines()[2 + table.rows.index(fast)]
    # The chosen backend runs predict's pipeline with the same labels as the model.
    image = np.random.default_rng(0).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(segmenter.predict(image).labels, model.predict(image).labels)


def test_a_cached_decision_is_reused_without_timing(model, fakes, tmp_path, monkeypatch):
    first_segmenter, first = fastest(model, SIZE, formats=fakes, threads=1, runs=1, cache_root=tmp_path)
    assert not first.cached
    calls = count_timings(monkeypatch)
    real_export = selection.export
    monkeypatch.setattr(selection, "export", lambda *a, **k: pytest.fail("a cached decision exports nothing"))
    segmenter, second = fastest(model, SIZE, formats=fakes, threads=1, runs=1, cache_root=tmp_path)
    assert calls == [] and second.cached and "cached decision" in str(second)
    assert second.chosen == first.chosen == "fast" and second.rows == first.rows
    assert isinstance(segmenter, FakeSegmenter) and segmenter.path == first_segmenter.path
    # cache=False measures again.
    _, third = fastest(model, SIZE, formats=fakes, threads=1, runs=1, cache=False, cache_root=tmp_path)
    assert len(calls) == len(third.rows) and not third.cached
    # A decision whose chosen export has gone is measured again (and the export written again).
    monkeypatch.setattr(selection, "export", real_export)
    segmenter.path.unlink()
    _, fourth = fastest(model, SIZE, formats=fakes, threads=1, runs=1, cache_root=tmp_path)
    assert not fourth.cached and len(calls) == 2 * len(third.rows) and segmenter.path.is_file()


def test_the_cache_key_follows_threads_weights_and_size(model, tmp_path, monkeypatch):
    fingerprint = backend_cache.model_fingerprint(model)
    key = backend_cache.decision_key(fingerprint, SIZE, 2, ["pytorch"], "b")
    assert key == backend_cache.decision_key(backend_cache.model_fingerprint(model), SIZE, 2, ["pytorch"], "b")
    other = narrow_model(num_classes=5, deep_stem=True).eval()  # the same architecture, other BatchNorm statistics
    assert backend_cache.model_fingerprint(other) != fingerprint
    changed = [
        backend_cache.decision_key(fingerprint, SIZE, 1, ["pytorch"], "b"),
        backend_cache.decision_key(fingerprint, (64, 96), 2, ["pytorch"], "b"),
        backend_cache.decision_key(fingerprint, SIZE, 2, ["pytorch", "onnx"], "b"),
    ]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    changed.append(backend_cache.decision_key(fingerprint, SIZE, 2, ["pytorch"], "b"))
    paths = {backend_cache.decision_path(tmp_path, k) for k in [key, *changed]}
    assert len(paths) == 5
    # End to end: a model whose weights changed is measured again (one thread: 2 contend on a loaded machine).
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setitem(FORMATS, "fast", fake("fast", model))
    fastest(model, SIZE, formats=["fast"], threads=1, runs=1, cache_root=tmp_path)
    calls = count_timings(monkeypatch)
    _, table = fastest(model, SIZE, formats=["fast"], threads=1, runs=1, cache_root=tmp_path)
    assert calls == [] and table.cached
    with torch.no_grad():
        model_copy = narrow_model(num_classes=5, deep_stem=True).eval()
        model_copy.load_state_dict(model.state_dict())
        model_copy.classifier.conv.bias.add_(0.01)
    _, table = fastest(model_copy, SIZE, formats=["fast"], threads=1, runs=1, cache_root=tmp_path)
    assert len(calls) == len(table.rows) and not table.cached


def test_a_runtime_that_is_missing_or_fails_is_a_row(model, monkeypatch, tmp_path):
    monkeypatch.setitem(FORMATS, "absent", fake("absent", model, run_packages=("no_such_runtime_xyz",)))
    monkeypatch.setitem(FORMATS, "broken", fake("broken", None))  # its run() fails: no network to call
    monkeypatch.setitem(FORMATS, "static", fake("static", model, static=True))
    monkeypatch.setitem(FORMATS, "onesize", fake("onesize", model, fixed_size="its converter keeps one shape"))
    formats = ["absent", "broken", "static", "onesize"]
    _, table = fastest(model, SIZE, formats=formats, threads=1, runs=1, cache=False, cache_root=tmp_path)
    absent, broken, static, onesize = (table.row(name) for name in formats)
    assert not static.kept and static.why.startswith("static shapes only (64x64)") and static.ms is None
    assert onesize.why == (
        "fixed size only (its converter keeps one shape): a backend for predict takes every input size"
    )
    assert not list(tmp_path.rglob("model.onesize"))  # refused before anything was exported
    assert not absent.kept and absent.ms is None
    assert "not installed" in absent.why and "pip install 'deeplabv3p[absent]'" in absent.why
    assert not broken.kept and broken.why.startswith("failed: ") and table.chosen in (EAGER, FOLDED)


def test_bad_arguments_fail_before_any_work(model, monkeypatch, tmp_path):
    monkeypatch.setitem(FORMATS, "nocpu", dataclasses.replace(fake("nocpu", model), runs_on_cpu=False))
    monkeypatch.setattr(selection, "time_calls", lambda *a: pytest.fail("nothing is timed"))
    cases = [
        (dict(formats=["nocpu"]), ValueError, r"'nocpu' cannot run on this machine; choose among"),
        (dict(formats=["nope"]), ValueError, r"'nope' is not a deployment format"),
        (dict(formats="onnx"), ValueError, r"formats must be a list of format names such as \['onnx'\]"),
        (dict(threads=0), ValueError, r"threads"),
        (dict(runs=0), ValueError, r"runs"),
        (dict(bounds=0.999), TypeError, r"bounds must be a deeplabv3p.deploy.Bounds"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            fastest(model, SIZE, cache_root=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="input_size"):
        fastest(model, (4, 64), cache_root=tmp_path)
    with pytest.raises(TypeError, match="must be a deeplabv3p model"):
        fastest(torch.nn.Conv2d(3, 3, 1), SIZE, cache_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_onnx_is_timed_proven_and_cached(model, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from deeplabv3p.deploy.onnx_runtime import OnnxSegmenter

    segmenter, table = fastest(model, SIZE, formats=["onnx"], threads=1, runs=1, cache_root=tmp_path)
    row = table.row("onnx")
    assert row.kept and row.labels >= 0.999 and row.rel_diff <= 1e-3 and row.ms is not None
    assert row.path is not None and Path(row.path).is_file() and Path(row.path).name == "model.onnx"
    if table.chosen == "onnx":
        assert isinstance(segmenter, OnnxSegmenter)
    onnx_segmenter = selection.backend_for(model, "onnx", SIZE, threads=1, cache_root=tmp_path)
    assert isinstance(onnx_segmenter, OnnxSegmenter) and str(onnx_segmenter.path) == row.path  # the cached file
    image = np.random.default_rng(1).integers(0, 256, size=(40, 72, 3), dtype=np.uint8)
    assert (onnx_segmenter.predict(image).labels == model.predict(image).labels).mean() >= 0.999


def test_backend_for_names_and_proof(model, monkeypatch, tmp_path):
    folded = selection.backend_for(model, FOLDED, SIZE)
    assert folded is not model and folded.config == model.config
    assert selection.backend_for(model, EAGER, SIZE) is model
    with pytest.raises(ValueError, match=r"backend='nope' is not a backend; choose 'auto' or one of \['pytorch'"):
        selection.backend_for(model, "nope", SIZE)
    monkeypatch.setitem(FORMATS, "wrong", fake("wrong", model, offset=1e3))
    with pytest.raises(ExportCheckError, match=r"the wrong export does not segment as the PyTorch model does"):
        selection.backend_for(model, "wrong", SIZE, cache_root=tmp_path)
