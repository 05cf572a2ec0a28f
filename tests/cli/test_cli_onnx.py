"""``deeplabv3p export --int8`` and ``deeplabv3p predict --model FILE.onnx``: the deployment path from the command
line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from parity import build
from PIL import Image

from deeplabv3p.cli import main

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """A narrow trained-weights model folder and a folder of images."""
    root = tmp_path_factory.mktemp("onnx_cli")
    model = build("r18_v1b_d8_slide")
    model.pretrained_cfg = model.pretrained_cfg.replace(test_scale=(72, 48))
    model.save_pretrained(root / "model")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(40, 60 + 4 * i, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    return root / "model", images


def test_export_int8_then_predict_with_either_file(saved, tmp_path, capsys):
    folder, images = saved
    onnx_file = tmp_path / "model.onnx"
    args = ["export", str(folder), "--out", str(onnx_file), "--size", "48x64", "--int8", "--calibration", str(images)]
    assert main([*args, "--calibration-images", "2"]) == 0
    printed = capsys.readouterr().out
    assert "onnx vs PyTorch fp32 at 48x64 (HxW), 2 input(s): labels 100.000% equal" in printed  # the fp32 proof
    assert "on 2 held-out image(s)" in printed and "% of pixels agree" in printed
    int8_file = tmp_path / "model.int8.onnx"
    assert int8_file.is_file()

    torch_out, onnx_out, int8_out = tmp_path / "torch", tmp_path / "onnx", tmp_path / "int8"
    assert main(["predict", str(images), "--model", str(folder), "--out", str(torch_out), "--no-progress"]) == 0
    assert main(["predict", str(images), "--model", str(onnx_file), "--out", str(onnx_out), "--no-progress"]) == 0
    assert main(["predict", str(images), "--model", str(int8_file), "--out", str(int8_out), "--no-progress"]) == 0
    agree = []
    for i in range(4):
        with Image.open(torch_out / f"im{i}.png") as a, Image.open(onnx_out / f"im{i}.png") as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        with Image.open(torch_out / f"im{i}.png") as a, Image.open(int8_out / f"im{i}.png") as c:
            agree.append((np.asarray(a) == np.asarray(c)).mean())
    assert np.mean(agree) > 0.9


def test_onnx_flags_are_checked(saved, tmp_path, capsys):
    folder, images = saved
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["predict", str(images), "--out", out])
    assert "--model" in capsys.readouterr().err
    onnx_file = str(tmp_path / "x.onnx")
    assert main(["predict", str(images), "--model", onnx_file, "--checkpoint", "w.safetensors", "--out", out]) == 2
    assert "is an exported file" in capsys.readouterr().err
    assert main(["predict", str(images), "--model", onnx_file, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "ONNX file" in err and "does not exist" in err
    assert main(["export", str(folder), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_an_int8_file_below_the_bound_is_removed(saved, tmp_path, capsys):
    from deeplabv3p.cli.export import INT8_LABELS
    from deeplabv3p.deploy.proof import INT8

    assert INT8.labels == INT8_LABELS  # the CLI's torch-free copy of the documented bound
    folder, images = saved
    out = tmp_path / "model.onnx"
    args = ["export", str(folder), "--out", str(out), "--size", "48x64", "--int8", "--calibration", str(images)]
    assert main([*args, "--calibration-images", "1", "--int8-min-agreement", "1.0"]) == 2
    err = capsys.readouterr().err
    assert "below --int8-min-agreement 1.0" in err and "was removed" in err
    assert out.is_file() and not (tmp_path / "model.int8.onnx").exists()
