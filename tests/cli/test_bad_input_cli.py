"""Bad-input catalogue, command line: every case exits with status 2 and one line naming the file or flag at fault,
never a traceback; ``export`` names the file it was asked to write, whatever failed underneath."""

from __future__ import annotations

import json
from pathlib import Path

import nets
import numpy as np
import pytest
import torch
from PIL import Image

import deeplabv3p
from deeplabv3p.cli import main
from deeplabv3p.pretrained.state_dict import WEIGHTS_NAME, save_state_dict
from deeplabv3p.train.demo import make_synthetic_dataset

NARROW = {"encoder": "resnet18", **nets.NARROW}  # the generic architecture on the tests' narrow ResNet-18
NARROW_ARGS = [
    "--model-kwargs",
    "encoder=resnet18",
    "encoder_kwargs={'channels': (8, 16, 32, 64)}",
    "decoder_channels=16",
    "low_level_channels=8",
]
QUIET = ["--no-progress"]
SHORT = ["--iters", "1", "--crop-size", "32", "32", "--num-workers", "0"]  # a case that is not refused ends soon


@pytest.fixture(scope="module")
def tiny() -> deeplabv3p.DeepLabV3Plus:
    torch.manual_seed(0)
    return deeplabv3p.create_model("deeplabv3plus", num_classes=3, **NARROW).eval()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def _folder_with_weights(tmp: Path, model: deeplabv3p.DeepLabV3Plus, content: bytes) -> Path:
    folder = model.save_pretrained(tmp / "model")
    (folder / WEIGHTS_NAME).write_bytes(content)
    return folder / WEIGHTS_NAME


def _file(tmp: Path, name: str, content: bytes) -> Path:
    (tmp / name).write_bytes(content)
    return tmp / name


def _predict_folder(content: bytes):
    def case(tmp: Path, model, image: Path) -> tuple[list[str], Path]:
        bad = _folder_with_weights(tmp, model, content)
        return ["predict", str(image), "--model", str(bad.parent), "--out", str(tmp / "out")], bad

    return case


def _predict_checkpoint(name: str, content: bytes):
    def case(tmp: Path, model, image: Path) -> tuple[list[str], Path]:
        bad = _file(tmp, name, content)
        argv = ["predict", str(image), "--model", "deeplabv3plus", "--checkpoint", str(bad), *NARROW_ARGS]
        return [*argv, "--out", str(tmp / "out")], bad

    return case


def _convert(name: str, content: bytes):
    def case(tmp: Path, model, image: Path) -> tuple[list[str], Path]:
        bad = _file(tmp, name, content)
        return ["convert", str(bad), "--model", "deeplabv3plus", "--out", str(tmp / "out")], bad

    return case


def _convert_into_foreign_folder(tmp: Path, model, image: Path) -> tuple[list[str], Path]:
    weights = save_state_dict(model.state_dict(), tmp / "w.safetensors")
    (tmp / "project").mkdir()
    (tmp / "project" / "README.md").write_text("mine")
    return ["convert", str(weights), "--model", "deeplabv3plus", "--out", str(tmp / "project")], tmp / "project"


@pytest.fixture(autouse=True)
def narrow_convert(monkeypatch: pytest.MonkeyPatch) -> None:
    """``convert --model deeplabv3plus`` builds the bare architecture (ResNet-50): make it the narrow one here."""
    from deeplabv3p.inference import model  # where the commands find create_model when they run
    from deeplabv3p.pretrained import publish  # where convert builds its model

    original = model.create_model

    def create_model(name, **kwargs):  # an architecture's name, or the resolved Source of --model
        bare = name == "deeplabv3plus" or getattr(getattr(name, "config", None), "architecture", "") == "deeplabv3plus"
        return original(name, **({**NARROW, **kwargs} if bare else kwargs))

    monkeypatch.setattr(model, "create_model", create_model)
    monkeypatch.setattr(publish, "build_model", lambda cls, name, **kwargs: create_model(name, **kwargs))


def _train(*flags: str, out_is_file: bool = False, named: str | None = None):
    def case(tmp: Path, model, image: Path) -> tuple[list[str], Path | str]:
        data = make_synthetic_dataset(tmp / "data", num_train=2, num_val=1, size=32)
        out = tmp / ("run.txt" if out_is_file else "run")
        if out_is_file:
            out.write_text("mine")
        argv = ["train", "--data", str(data), "--model", "deeplabv3plus", *NARROW_ARGS, *SHORT, *flags]
        return [*argv, "--out", str(out), *QUIET], out if out_is_file else named or flags[0][2:].replace("-", "_")

    return case


def _evaluate(json: str | None = None, model: str | None = None):
    """``evaluate`` of the saved tiny model on a synthetic dataset; `json`: "parent-file" (its parent is a file) or
    "folder" (it is one); `model`: "file" (--model names a file) or "missing" (a folder that is not there)."""

    def case(tmp: Path, tiny, image: Path) -> tuple[list[str], Path]:
        data = make_synthetic_dataset(tmp / "data", num_train=2, num_val=1, size=32)
        named = folder = tiny.save_pretrained(tmp / "model")
        flags = []
        if json == "parent-file":
            named = _file(tmp, "notes.txt", b"mine")
            flags = ["--json", str(named / "metrics.json")]
        elif json == "folder":
            named = tmp / "metrics"
            named.mkdir()
            flags = ["--json", str(named)]
        if model == "file":
            folder = named = folder / WEIGHTS_NAME
        elif model == "missing":
            folder = named = tmp / "nowhere" / "model"
        return ["evaluate", "--data", str(data), "--model", str(folder), *flags, "--no-audit", *QUIET], named

    return case


# (case id, the case: (tmp, model, image) -> (argv, the file or setting stderr must name), other words it must hold)
CLI_CASES = [
    ("predict-folder-empty-weights", _predict_folder(b""), ["empty"]),
    ("predict-folder-random-weights", _predict_folder(bytes(range(256)) * 2), ["safetensors"]),
    ("predict-checkpoint-truncated", _predict_checkpoint("w.safetensors", b"\x08\0\0\0\0\0\0\0{"), ["safetensors"]),
    ("predict-checkpoint-random-pth", _predict_checkpoint("w.pth", bytes(range(256)) * 2), ["torch.save"]),
    ("convert-empty-safetensors", _convert("w.safetensors", b""), ["empty"]),
    ("convert-random-pth", _convert("w.pth", bytes(range(256)) * 2), ["torch.save"]),
    ("convert-into-a-foreign-folder", _convert_into_foreign_folder, ["--overwrite"]),
    ("train-out-is-a-file", _train(out_is_file=True), ["is a file"]),
    ("train-momentum-5", _train("--momentum", "5"), ["[0, 1)"]),
    ("train-batch-size-1", _train("--batch-size", "1"), [">= 2"]),
    # issue 18: arguments checked before the work, and paths described as what they are
    ("train-batch-size-4096", _train("--batch-size", "4096"), ["4096", "2 samples", "--batch-size 2"]),
    ("train-val-split-typo", _train("--val-split", "vall", named="--val-split"), ["'vall'", "'val'", "none"]),
    ("evaluate-json-parent-is-a-file", _evaluate(json="parent-file"), ["--json", "is a file"]),
    ("evaluate-json-is-a-folder", _evaluate(json="folder"), ["--json", "is a folder"]),
    ("evaluate-model-is-a-file", _evaluate(model="file"), ["is a file", "--pretrained"]),
    ("evaluate-model-folder-missing", _evaluate(model="missing"), ["no folder"]),
]


@pytest.mark.parametrize(("case", "words"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_input_is_one_line(tmp_path, tiny, image, capsys, case, words):
    argv, named = case(tmp_path, tiny, image)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deeplabv3p {argv[0]}: error: ") and "Traceback" not in err, err
    assert str(named) in err and all(word in err for word in words), err
    assert "mIoU" not in capsys.readouterr().out  # refused before any evaluation or training


def test_convert_overwrite_writes_into_a_foreign_folder(tmp_path, tiny, image):
    argv, folder = _convert_into_foreign_folder(tmp_path, tiny, image)
    assert main([*argv, "--overwrite"]) == 0
    assert deeplabv3p.create_model(str(folder)).num_classes == 3 and (folder / "README.md").read_text() != "mine"


def test_folder_predict_with_a_corrupt_file_survives_an_abort_and_a_rerun_finishes(tmp_path, tiny, capsys, monkeypatch):
    """Issue 18: a zero-byte image aborted the whole run (and every rerun), with no manifest. Now it is reported and
    skipped (exit status 1 at the end), a run stopped half-way (Ctrl-C) leaves the manifest of what it wrote, and
    a rerun finishes the job."""
    from deeplabv3p.inference.result import SegmentationResult

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "d.png"):
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(images / name)
    (images / "c.png").write_bytes(b"")  # a zero-byte file (a failed download)
    out = tmp_path / "out"
    argv = ["predict", str(images), "--model", str(tiny.save_pretrained(tmp_path / "model")), "--out", str(out)]
    real_save, saved = SegmentationResult.save, []

    def save_then_stop(self, path, *args, **kwargs):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(path)
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(SegmentationResult, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        main([*argv, *QUIET])
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    # what happened before the abort (at d.png): two written, the corrupt file reported
    assert [Path(r["input"]).name for r in records] == ["a.png", "b.png", "c.png"] and "error" in records[2]
    monkeypatch.setattr(SegmentationResult, "save", real_save)
    capsys.readouterr()
    assert main([*argv, *QUIET]) == 1  # the rerun writes the rest, and says the corrupt file was skipped
    captured = capsys.readouterr()
    assert "wrote label maps of 1 image(s)" in captured.out and "2 already there" in captured.out
    assert "1 input(s) could not be read" in captured.err and str(images / "c.png") in captured.err
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [Path(r["input"]).name for r in records] == ["a.png", "b.png", "c.png", "d.png"]
    assert str(images / "c.png") in records[2]["error"] and sorted(p.name for p in out.glob("*.png")) == [
        "a.png", "b.png", "d.png",
    ]  # fmt: skip
    Image.new("RGB", (44, 36)).save(images / "c.png")  # the file is fixed: the next run finishes the job
    assert main([*argv, *QUIET]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 4 and not any("error" in r for r in records) and (out / "c.png").is_file()
