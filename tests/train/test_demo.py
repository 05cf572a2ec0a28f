"""The offline demo: its synthetic data, its overlays, and (slow) that it really learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nets import tiny_model
from PIL import Image
from train_helpers import one_thread  # noqa: F401  (one_thread: autouse fixture)

import deeplabv3p
from deeplabv3p.cli import main
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.demo import DEMO_CLASSES, DEMO_PALETTE, _write_overlays, make_synthetic_dataset, synthetic_sample


def test_synthetic_dataset_layout_and_reproducibility(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "a", num_train=4, num_val=2, size=64, seed=5)
    train = SegmentationDataset(root, "train")
    assert len(train) == 4 and len(SegmentationDataset(root, "val")) == 2
    assert train.classes == DEMO_CLASSES and train.palette == DEMO_PALETTE
    assert Image.open(train.samples[0][1]).mode == "P"  # palette masks, read back as indices
    again = make_synthetic_dataset(tmp_path / "b", num_train=4, num_val=2, size=64, seed=5)
    other = make_synthetic_dataset(tmp_path / "c", num_train=4, num_val=2, size=64, seed=6)
    first = train.load(0)
    assert all(np.array_equal(x, y) for x, y in zip(first, SegmentationDataset(again, "train").load(0)))
    assert not np.array_equal(first[0], SegmentationDataset(other, "train").load(0)[0])


def test_synthetic_masks_label_the_drawn_shapes() -> None:
    rng = np.random.default_rng(0)
    samples = [synthetic_sample(rng, size=96) for _ in range(30)]
    labels = set().union(*(np.unique(m).tolist() for _, m in samples))
    assert labels == set(range(len(DEMO_CLASSES)))
    for image, mask in samples:
        hsv = np.asarray(Image.fromarray(image).convert("HSV"), dtype=np.float64)
        # objects are saturated colours, the background is nearly grey: the mask is where the colour is
        assert hsv[..., 1][mask > 0].mean() > 2 * hsv[..., 1][mask == 0].mean()


def test_overlays_are_written_for_held_out_images(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", num_train=1, num_val=3, size=48, seed=1)
    val = SegmentationDataset(root, "val")
    paths = _write_overlays(tiny_model().eval(), val, tmp_path / "overlays", count=2)
    assert [p.name for p in paths] == ["val_0000.png", "val_0001.png"]
    overlay = np.asarray(Image.open(paths[0]))
    assert overlay.shape == (48, 48, 3) and not np.array_equal(overlay, val.read_image(0))


def test_demo_command_writes_model_and_overlays(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path), "--iters", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "cross" in printed
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 8
    model = deeplabv3p.create_model(str(tmp_path / "run" / "best"))
    assert model.pretrained_cfg.classes == DEMO_CLASSES
    assert main(["demo", "--out", str(tmp_path), "--iters", "1", "--no-progress"]) == 0  # runs again in place
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["iter_000001", "latest"]


@pytest.mark.slow
def test_demo_learns(tmp_path: Path) -> None:
    from deeplabv3p.train.demo import run_demo

    result = run_demo(tmp_path, progress=False)
    assert result.metrics["mIoU"] > 80.0
    assert min(result.metrics["IoU"].values()) > 60.0
