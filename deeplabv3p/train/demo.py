"""The offline demo: a synthetic segmentation dataset, a small DeepLabV3+ fine-tuned on it on the CPU, its per-class
IoU table, overlays of held-out images and the trained model as a model folder.

The data are textured shapes on grey, mottled backgrounds: discs with dots, squares with stripes, triangles with a
checkerboard and crosses with grain, each in its own hue band, drawn at random sizes, angles and overlaps. A
network has to use colour, texture and shape together, and a small one learns it from scratch (no download) in a
few minutes. Everything is seeded: the same arguments give the same dataset and the same numbers.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_write_text
from .datasets import SegmentationDataset

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus
    from ..inference.result import SegmentationResult

__all__ = ["DEMO_CLASSES", "DEMO_PALETTE", "DemoResult", "make_synthetic_dataset", "run_demo"]

DEMO_CLASSES = ("background", "disc", "square", "triangle", "cross")
DEMO_PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25))
_HUES = {1: 0.0, 2: 1 / 3, 3: 2 / 3, 4: 1 / 6}  # red, green, blue, yellow bands (fraction of the colour circle)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) to RGB floats in [0, 1], shape (..., 3)."""
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros((*h.shape, 3))
    for k, (r, g, b) in enumerate(choices):
        sel = i == k
        rgb[sel] = np.stack([r[sel], g[sel], b[sel]], axis=-1)
    return rgb


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random `cells` x `cells` grid upsampled bilinearly."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Pixels inside the shape of class `cls`, in the shape's own rotated coordinates (u, v) scaled by radius r."""
    if cls == 1:  # disc
        return u**2 + v**2 < r**2
    if cls == 2:  # square
        return np.maximum(np.abs(u), np.abs(v)) < 0.8 * r
    if cls == 3:  # equilateral triangle, circumradius r
        return (v > -0.5 * r) & (np.sqrt(3) * u + v < r) & (-np.sqrt(3) * u + v < r)
    arm = 0.33 * r  # cross
    return ((np.abs(u) < arm) & (np.abs(v) < r)) | ((np.abs(v) < arm) & (np.abs(u) < r))


def _texture(cls: int, rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness pattern in [0, 1] of class `cls`: dots, stripes, checkerboard or grain."""
    if cls == 1:
        f = rng.uniform(0.5, 0.9)
        return 0.5 + 0.5 * np.sin(f * u) * np.sin(f * v)
    if cls == 2:
        f, a = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
        return 0.5 + 0.5 * np.sin(f * (u * np.cos(a) + v * np.sin(a)))
    if cls == 3:
        period = rng.uniform(3.0, 5.0)
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    return rng.random(u.shape)


def synthetic_sample(rng: np.random.Generator, size: int = 128, max_objects: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image (size, size, 3) uint8, mask (size, size) uint8)`` pair of the demo's kind."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    hue = np.full((size, size), rng.random())
    sat = np.full((size, size), rng.uniform(0.0, 0.2))
    val = 0.25 + 0.5 * _smooth_noise(rng, size, 4) + rng.normal(0, 0.04, (size, size))
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(1, len(DEMO_CLASSES)))
        r = rng.uniform(0.09, 0.22) * size
        cx, cy = rng.uniform(0, size, 2)
        angle = rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        inside = _shape_mask(cls, u, v, r)
        if not inside.any():
            continue
        hue[inside] = (_HUES[cls] + rng.uniform(-0.04, 0.04)) % 1.0
        sat[inside] = rng.uniform(0.55, 0.95)
        val[inside] = (0.45 + 0.5 * _texture(cls, rng, u, v))[inside]
        mask[inside] = cls
    rgb = _hsv_to_rgb(hue, np.clip(sat, 0, 1), np.clip(val, 0, 1))
    return (rgb * 255 + 0.5).astype(np.uint8), mask


def make_synthetic_dataset(
    root: str | Path, num_train: int = 160, num_val: int = 40, size: int = 128, seed: int = 0
) -> Path:
    """Write a dataset in `SegmentationDataset`'s layout (palette PNG masks, classes.json with a palette)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    palette = [c for rgb in DEMO_PALETTE for c in rgb]
    for split, count in (("train", num_train), ("val", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = synthetic_sample(rng, size)
            Image.fromarray(image).save(root / "images" / split / f"{split}_{i:04d}.png")
            indexed = Image.fromarray(mask, mode="P")
            indexed.putpalette(palette)
            indexed.save(root / "masks" / split / f"{split}_{i:04d}.png")
    classes = {"classes": list(DEMO_CLASSES), "palette": [list(c) for c in DEMO_PALETTE]}
    atomic_write_text(root / "classes.json", json.dumps(classes, indent=2) + "\n")
    return root


def demo_model(num_classes: int = len(DEMO_CLASSES)) -> DeepLabV3Plus:
    """The demo's network: DeepLabV3+ on a narrow ResNet-18 (about 1 M parameters), trained from scratch."""
    from ..inference.model import create_model

    return create_model(
        "deeplabv3plus",
        encoder="resnet18",
        encoder_kwargs={"channels": (16, 32, 64, 128)},
        output_stride=8,
        decoder_channels=64,
        low_level_channels=16,
        aux_head=True,
        aux_channels=32,
        num_classes=num_classes,
    )


# The recipe the README's number comes from: mmseg's pipeline and schedule, a higher learning rate because the
# network starts from random weights, 128 px crops.
DEMO_RECIPE: dict[str, Any] = {
    "iters": 400,
    "batch_size": 8,
    "crop_size": (128, 128),
    "lr": 0.05,
    "val_interval": 100,
    "num_workers": 0,
}


@dataclass
class DemoResult:
    """What the demo produced and measured."""

    metrics: dict[str, Any]
    model_path: Path
    overlays: list[Path]
    seconds: float


def run_demo(
    out: str | Path = "deeplabv3p-demo",
    iters: int | None = None,
    seed: int = 0,
    device: str | None = None,
    num_overlays: int = 8,
    threads: int | None = 1,
    progress: bool = True,
) -> DemoResult:
    """Make the dataset in ``OUT/data``, fine-tune into ``OUT/run`` (best model: ``OUT/run/best``), evaluate on the
    held-out split and draw the predictions of its first `num_overlays` images into ``OUT/overlays/``.

    `threads` caps torch's CPU threads during the demo (restored afterwards): the network is too small for
    intra-op parallelism to pay, and one thread stays fast when other programs load the CPU, where two threads
    can be ten times slower. None keeps torch's setting.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(Path(out), iters, seed, device, num_overlays, progress)
    finally:
        torch.set_num_threads(previous)


def _run_demo(
    out: Path, iters: int | None, seed: int, device: str | None, num_overlays: int, progress: bool
) -> DemoResult:
    from . import trainer as training
    from .evaluation import evaluate

    start = time.perf_counter()
    data_root = make_synthetic_dataset(out / "data", seed=seed)  # seconds to make; always matches `seed`
    train_set = SegmentationDataset(data_root, "train")
    val_set = SegmentationDataset(data_root, "val")
    torch.manual_seed(seed)
    model = demo_model(train_set.num_classes)
    recipe = {**DEMO_RECIPE, "seed": seed, **({"iters": iters} if iters is not None else {})}
    run = out / "run"
    if (run / training.TRAIN_CONFIG_FILE).is_file():
        shutil.rmtree(run)  # a previous demo's run: the demo starts afresh every time
    result = training.fit(model, train_set, val_set, out=run, device=device, progress=progress, **recipe)
    metrics = result.metrics or evaluate(model, val_set, progress=progress)  # fit's last validation
    overlays = _write_overlays(model, val_set, out / "overlays", num_overlays)
    model_path = result.best_path or result.last_checkpoint
    assert model_path is not None  # fit checkpoints its last iteration
    return DemoResult(metrics, Path(model_path), overlays, time.perf_counter() - start)


def _write_overlays(model: DeepLabV3Plus, dataset: SegmentationDataset, folder: Path, count: int) -> list[Path]:
    """Predictions on the first `count` images of `dataset` drawn over them, as ``folder/NAME.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        cast("SegmentationResult", model.predict(dataset.read_image(i))).save(
            folder / f"{dataset.samples[i][0].stem}.png", kind="overlay"
        )
        for i in range(min(count, len(dataset)))
    ]
