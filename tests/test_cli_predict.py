"""``deeplabv3p predict`` end to end on a narrow network loaded from a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv3p import create_model
from deeplabv3p.cli import main

CHECKPOINT = Path(__file__).parent / "data" / "parity" / "r18_v1b_d8_slide.safetensors"
NARROW_ARGS = [
    "--model",
    "deeplabv3plus_r18b_d8",
    "--pretrained",
    str(CHECKPOINT),
    "--model-kwargs",
    "num_classes=3",
    "encoder_kwargs={'channels': (8, 16, 32, 64)}",
    "decoder_channels=32",
    "low_level_channels=8",
    "aux_channels=16",
]


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)).save(folder / "street.png")
    Image.fromarray(rng.integers(0, 256, size=(45, 70), dtype=np.uint8)).save(folder / "gray.jpg")
    (folder / "README.txt").write_text("not an image")
    return folder


def test_predict_writes_labels_and_overlays_named_after_inputs(image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(image_dir),
            *NARROW_ARGS,
            "--out",
            str(out),
            "--overlay",
            "--mode",
            "slide",
            "--crop-size",
            "32",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["gray.png", "gray_overlay.jpg", "street.png", "street_overlay.jpg"]
    assert "2 image(s)" in capsys.readouterr().out
    model = create_model(
        "deeplabv3plus_r18b_d8",
        pretrained=str(CHECKPOINT),
        num_classes=3,
        encoder_kwargs={"channels": (8, 16, 32, 64)},
        decoder_channels=32,
        low_level_channels=8,
        aux_channels=16,
    )
    for name, size in (("street", (60, 90)), ("gray", (45, 70))):
        source = next(image_dir.glob(f"{name}.*"))
        with Image.open(out / f"{name}.png") as im:
            assert im.mode == "P"
            labels = np.asarray(im)
        expected = model.predict(source, mode="slide", crop_size=32).labels
        np.testing.assert_array_equal(labels, expected)
        with Image.open(out / f"{name}_overlay.jpg") as im:
            assert im.size == (size[1], size[0]) and im.mode == "RGB"


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
