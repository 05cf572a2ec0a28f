"""``deeplabv3p benchmark-backends`` and ``predict --backend``: the runtime choice from the command line, on a
narrow network at 64x64 with its decision cached in a temporary cache folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from parity import build
from PIL import Image

from deeplabv3p.cli import main
from deeplabv3p.deploy.formats import FORMATS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """A narrow trained-weights model folder (whole mode, test scale 64x64) and a folder of two images."""
    root = tmp_path_factory.mktemp("backends_cli")
    model = build("r18_v1b_d8_slide")
    model.pretrained_cfg = model.pretrained_cfg.replace(test_mode="whole", test_scale=(64, 64))
    model.save_pretrained(root / "model")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    return root / "model", images


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Iterator[Path]:
    """An empty cache folder; torch on one thread (two contend on a loaded 2-core machine) and ONNX the only
    format (others that land in FORMATS are tested in their own files)."""
    monkeypatch.setenv("DEEPLABV3P_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in [n for n in FORMATS if n != "onnx"]:
        monkeypatch.delitem(FORMATS, name)
    yield tmp_path / "cache"
    torch.set_num_threads(threads)


def test_benchmark_backends_prints_the_table_and_caches_it(saved, cache, capsys):
    folder, _ = saved
    args = ["benchmark-backends", str(folder), "--size", "64x64", "--formats", "onnx", "--threads", "1", "--runs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "1 thread(s), input 1x64x64 (measured" in lines[0] and "labels >= 99.9% equal" in lines[0]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert {"pytorch", "pytorch-folded", "onnx"} <= set(rows)
    assert "yes (reference)" in rows["pytorch"] and "100.00%" in rows["onnx"]
    assert sum("<- chosen" in line for line in lines) == 1
    assert list(cache.glob("backends/*/64x64-*/model.onnx")) and list(cache.glob("backends/*/64x64-*/decision-*"))
    assert main(args) == 0
    again = capsys.readouterr().out.splitlines()
    assert "(cached decision of" in again[0] and again[1:] == lines[1:]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--formats", "onnx,nope"], "'nope' is not a deployment format"),
        (["--threads", "0"], "--threads must be"),
        (["--size", "4x64"], "input_size"),
    ],
)
def test_benchmark_backends_bad_arguments(saved, cache, capsys, extra, match):
    assert main(["benchmark-backends", str(saved[0]), "--runs", "1", *extra]) == 2
    assert match in capsys.readouterr().err
    assert not cache.exists()


def test_predict_with_backend_auto_and_onnx_writes_the_same_labels(saved, cache, tmp_path, capsys):
    folder, images = saved
    outs = {name: tmp_path / name for name in ("torch", "auto", "onnx")}
    base = ["predict", str(images), "--model", str(folder), "--no-progress", "--out"]
    assert main([*base, str(outs["torch"])]) == 0
    assert main([*base, str(outs["auto"]), "--backend", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "input 1x48x64" in printed and "<- chosen" in printed  # the first image after the 64x64 test rescale
    assert main([*base, str(outs["onnx"]), "--backend", "onnx", "--backend-size", "64x64"]) == 0
    for i in range(2):
        with Image.open(outs["torch"] / f"im{i}.png") as a:
            expected = np.asarray(a)
        for name in ("auto", "onnx"):
            with Image.open(outs[name] / f"im{i}.png") as b:
                assert (np.asarray(b) == expected).mean() >= 0.999


def test_predict_backend_flags_are_checked(saved, cache, tmp_path, capsys):
    folder, images = saved
    base = ["predict", str(images), "--model", str(folder), "--out", str(tmp_path / "out")]
    for extra, match in (
        (["--backend-size", "64x64"], "--backend-size applies to --backend"),
        (["--backend", "onnx", "--dtype", "bfloat16"], "drop --dtype / --channels-last"),
        (["--backend", "auto", "--device", "cuda"], "chooses among CPU runtimes"),
    ):
        assert main([*base, *extra]) == 2
        assert match in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WORLD_SIZE", "2")
        env.setenv("RANK", "0")
        assert main([*base, "--backend", "auto"]) == 2
        assert "run predict without torchrun" in capsys.readouterr().err
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    assert (
        main(["predict", str(images), "--model", str(onnx_file), "--out", str(tmp_path / "o"), "--backend", "auto"])
        == 2
    )
    assert "--backend applies to PyTorch models" in capsys.readouterr().err
    assert not cache.exists() and not (tmp_path / "out").exists()


def test_benchmark_backends_help_needs_no_torch():
    code = (
        "import sys\nfrom deeplabv3p.cli import main\ntry:\n    main(['benchmark-backends', '--help'])\n"
        "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--formats NAME,..." in done.stdout and "onnx" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "False"
