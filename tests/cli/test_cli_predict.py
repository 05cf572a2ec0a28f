"""``deeplabv3p predict`` end to end on a narrow network: from a saved model folder and from a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nets import model_kwargs_args
from parity import PARITY, build, model_kwargs
from PIL import Image

from deeplabv3p.cli import main

CASE = "r18_v1b_d8_slide"
ARCH, KWARGS = model_kwargs(CASE)
# The narrow golden network from its mmseg checkpoint, described on the command line as timm does (KEY=VALUE).
NARROW_ARGS = [
    "--model",
    ARCH,
    "--pretrained",
    str(PARITY / f"{CASE}.safetensors"),
    "--model-kwargs",
    *model_kwargs_args(**KWARGS),
]


def _narrow_model():
    return build(CASE)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)).save(folder / "street.png")
    Image.fromarray(rng.integers(0, 256, size=(45, 70), dtype=np.uint8)).save(folder / "gray.jpg")
    (folder / "README.txt").write_text("not an image")
    return folder


def test_predict_from_a_saved_folder_writes_labels_and_overlays(image_dir, tmp_path, capsys):
    model = _narrow_model()
    model.pretrained_cfg = model.pretrained_cfg.replace(
        classes=("sky", "road", "car"), palette=((10, 20, 30), (40, 50, 60), (70, 80, 90)), test_scale=(80, 48)
    )
    folder = model.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    rc = main(["predict", str(image_dir), "--model", str(folder), "--out", str(out), "--overlay", "--tta"])
    assert rc == 0
    written = ["gray.png", "gray_overlay.jpg", "manifest.jsonl", "street.png", "street_overlay.jpg"]
    assert sorted(p.name for p in out.iterdir()) == written
    assert "2 image(s)" in capsys.readouterr().out
    for name, size in (("street", (60, 90)), ("gray", (45, 70))):
        source = next(image_dir.glob(f"{name}.*"))
        with Image.open(out / f"{name}.png") as im:
            assert im.mode == "P" and im.getpalette()[:9] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
            labels = np.asarray(im)
        # the saved test scale and palette travelled with the folder
        np.testing.assert_array_equal(labels, model.predict(source, tta=True).labels)
        with Image.open(out / f"{name}_overlay.jpg") as im:
            assert im.size == (size[1], size[0]) and im.mode == "RGB"


def test_predict_from_a_checkpoint_file_with_model_kwargs(image_dir, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(image_dir / "street.png"),
            *NARROW_ARGS,
            "--out",
            str(out),
            "--mode",
            "slide",
            "--crop-size",
            "32",
        ]
    )
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "street.png"]
    with Image.open(out / "street.png") as im:
        labels = np.asarray(im)
    expected = _narrow_model().predict(image_dir / "street.png", mode="slide", crop_size=32).labels
    np.testing.assert_array_equal(labels, expected)


def test_predict_never_overwrites_an_input(image_dir):
    before = (image_dir / "street.png").read_bytes()
    assert main(["predict", str(image_dir / "street.png"), *NARROW_ARGS, "--out", str(image_dir)]) == 2
    assert (image_dir / "street.png").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "deeplabv3plus_r18b_d8"], "needs trained weights"),
        ([*NARROW_ARGS, "--dtype", "float16", "--device", "cpu"], "float16 needs a GPU"),
        ([*NARROW_ARGS, "--mode", "slide"], "needs a window"),
        ([*NARROW_ARGS, "--model-kwargs", "num_classes"], "KEY=VALUE"),
    ],
)
def test_predict_reports_bad_arguments(image_dir, tmp_path, capsys, args, match):
    assert main(["predict", str(image_dir), *args, "--out", str(tmp_path / "out")]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_predict_reports_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), *NARROW_ARGS, "--out", str(tmp_path / "o")]) == 2
    assert "no image files" in capsys.readouterr().err
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "same.png")
    assert main(["predict", str(a), str(b), *NARROW_ARGS, "--out", str(tmp_path / "o")]) == 2
    assert "would both be written" in capsys.readouterr().err
