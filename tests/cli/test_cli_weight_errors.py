"""Errors raised under a command name its flags (``--checkpoint FILE``), the same errors raised in Python its
keywords (``checkpoint_path="FILE"``): one text each, spelt by `deeplabv3p.spelling`."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from huggingface_hub import constants
from PIL import Image
from zoo_helpers import GOLDEN_ARCH, GOLDEN_CONFIG, GOLDEN_NAME, GOLDEN_PTH, register_golden

import deeplabv3p
from deeplabv3p import cli, spelling
from deeplabv3p.pretrained import zoo


def test_arguments_are_spelt_as_python_or_as_the_commands_flags():
    assert spelling.arg("checkpoint_path", "w.pth") == 'checkpoint_path="w.pth"'
    assert spelling.arg("num_classes", 7) == "num_classes=7"
    assert spelling.call("a.b", pretrained=True, checkpoint_path="w.pth") == (
        'create_model("a.b", pretrained=True, checkpoint_path="w.pth")'
    )
    with spelling.command_line({"--model", "--checkpoint", "--pretrained", "--model-kwargs"}):
        assert spelling.arg("checkpoint_path", "w.pth") == "--checkpoint w.pth"
        assert spelling.arg("num_classes", 7) == "--model-kwargs num_classes=7"
        assert spelling.arg("mean", (1, 2)) == '--model-kwargs "mean=(1, 2)"'
        assert (
            spelling.call("a.b", pretrained=True, checkpoint_path="my w.pth") == '--model a.b --checkpoint "my w.pth"'
        )
    with spelling.command_line({"--model", "--pretrained", "--encoder-pretrained"}):  # train: no --checkpoint
        assert spelling.arg("checkpoint_path", "w.pth") == "--pretrained w.pth"
        assert spelling.arg("encoder_pretrained", False) == "without --encoder-pretrained"
        assert spelling.arg("num_classes", 7) == "num_classes=7"  # no --model-kwargs: Python it stays
    assert spelling.arg("checkpoint_path", "w.pth") == 'checkpoint_path="w.pth"'  # only inside the block


def test_command_flags_are_the_option_strings_of_the_command():
    flags = spelling.command_flags(cli.build_parser(), "predict")
    assert {"--model", "--checkpoint", "--model-kwargs"} <= flags.keys()
    assert (flags["--backend-size"], flags["--bands"], flags["--model"]) == ("x", ",", " ")  # how each writes values
    assert "--checkpoint" not in spelling.command_flags(cli.build_parser(), "evaluate")
    assert spelling.command_flags(argparse.ArgumentParser(), "predict") == {}


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    return path


def test_an_unavailable_tag_names_the_flags_of_the_command(monkeypatch, tmp_path, image, capsys):
    register_golden(monkeypatch, url="https://download.openmmlab.com/x/golden.pth")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # caches only: nothing to download from
    assert cli.main(["predict", str(image), "--model", GOLDEN_NAME, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"pass it: --model {GOLDEN_NAME} --checkpoint golden.pth\n" in err and "create_model(" not in err
    assert cli.main(["evaluate", "--model", GOLDEN_NAME, "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"pass it: --model {GOLDEN_NAME} --pretrained golden.pth\n" in err and "create_model(" not in err
    with pytest.raises(deeplabv3p.WeightsUnavailableError) as info:  # the same error in Python
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert f'pass it: create_model("{GOLDEN_NAME}", pretrained=True, checkpoint_path="golden.pth")' in str(info.value)


def test_a_class_count_mismatch_names_model_kwargs(monkeypatch, tmp_path, image, capsys):
    monkeypatch.setitem(zoo.ARCHITECTURES, GOLDEN_ARCH, GOLDEN_CONFIG.replace(num_classes=5))  # the file has 7
    out = str(tmp_path / "o")
    args = ["predict", str(image), "--model", GOLDEN_ARCH, "--checkpoint", str(GOLDEN_PTH), "--out", out]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "pass --model-kwargs num_classes=7 to load it as it is, or --model-kwargs num_classes=5 explicitly" in err


def test_a_reserved_encoder_kwarg_names_the_flag_to_use(monkeypatch, tmp_path, image, capsys):
    monkeypatch.setitem(zoo.ARCHITECTURES, GOLDEN_ARCH, GOLDEN_CONFIG)
    kwargs = "encoder_kwargs={'checkpoint_path': 'x.pth'}"
    weights = ["--model", GOLDEN_ARCH, "--checkpoint", str(GOLDEN_PTH)]
    assert cli.main(["predict", str(image), *weights, "--model-kwargs", kwargs, "--out", str(tmp_path / "o")]) == 2
    assert "may not set 'checkpoint_path': deeplabv3p sets it itself; use --checkpoint FILE instead" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="use checkpoint_path=FILE instead"):  # in Python, the keyword
        deeplabv3p.create_model("deeplabv3plus", encoder_kwargs={"checkpoint_path": "x.pth"})
