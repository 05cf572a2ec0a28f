"""Benchmark inputs and the benchmark network's weights, made offline and deterministically.

Images are "dead leaves": opaque discs with a power-law size distribution laid over each other, which reproduces the
scale-invariant statistics of natural images well enough here and needs no data files. Each disc has a class and
that class's colour (Cityscapes' palette) plus a jitter, so an image comes with its segmentation labels.

The network whose fast paths are compared must behave like a trained one. A randomly initialised DeepLabV3+ does
not: input noise well below one grey level flips several percent of its argmax labels, so any reduced-precision
path looks bad on it, and with an uncentred classifier one class wins everywhere, so any path looks perfect.
`train_briefly` therefore trains the real architecture for a few hundred steps on the synthetic task; the result
segments held-out images into all classes with a real network's robustness (both are reported with the results).
`calibrate` (BatchNorm statistics and a centred classifier, no training) is enough where only non-trivial weights
are needed, as in the parity check against mmseg.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch import nn


def palette(num_classes: int) -> np.ndarray:
    """An RGB colour per class: Cityscapes' palette (19 distinct colours), then seeded random ones beyond it."""
    from deeplabv3p.pretrained.zoo import DATASETS

    base = np.asarray(DATASETS["cityscapes"]["palette"], dtype=np.float32)
    extra = np.random.default_rng(0).uniform(0, 255, size=(max(0, num_classes - len(base)), 3)).astype(np.float32)
    return np.concatenate([base, extra])[:num_classes]


def dead_leaves(
    height: int, width: int, seed: int, num_classes: int = 19, min_radius: float = 3.0, coverage: float = 0.99
) -> tuple[np.ndarray, np.ndarray]:
    """A dead-leaves image and its labels: discs with radius density ~ r^-3 from `min_radius` to a third of the image,
    drawn front to back until `coverage` of the pixels is covered; each disc (and the background) has a class and the
    class's `palette` colour plus a per-disc jitter, so classes overlap a little in colour as real ones do.

    Returns (H, W, 3) uint8 RGB and (H, W) uint8 labels.
    """
    rng = np.random.default_rng(seed)
    colours = palette(num_classes)
    image = np.empty((height, width, 3), dtype=np.float32)
    labels = np.empty((height, width), dtype=np.uint8)

    def pick() -> tuple[int, np.ndarray]:
        k = int(rng.integers(num_classes))
        return k, colours[k] + rng.normal(0, 12, size=3)

    labels[:], image[:] = pick()
    max_radius = max(height, width) / 3
    covered = np.zeros((height, width), dtype=bool)
    yy, xx = np.ogrid[:height, :width]
    target, done = coverage * height * width, 0
    while done < target:
        u = rng.uniform()  # inverse-CDF sample of p(r) ~ r^-3 on [min_radius, max_radius]
        r = 1.0 / np.sqrt(u / max_radius**2 + (1 - u) / min_radius**2)
        cy, cx = rng.uniform(-r, height + r), rng.uniform(-r, width + r)
        y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        fresh = ((yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= r * r) & ~covered[y0:y1, x0:x1]
        n = int(fresh.sum())
        if n:
            k, colour = pick()
            image[y0:y1, x0:x1][fresh] = colour
            labels[y0:y1, x0:x1][fresh] = k
            covered[y0:y1, x0:x1] |= fresh
            done += n
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)  # sensor-like noise: texture inside the discs
    return np.clip(image, 0, 255).astype(np.uint8), labels


def normalize(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 RGB images (same size) -> a normalized float32 NCHW batch, mmseg's mean and std (the library's own
    normalisation, so the benchmark network sees what `predict` would feed it)."""
    from deeplabv3p.inference.pipeline import normalize as normalize_batch
    from deeplabv3p.pretrained.config import PretrainedCfg

    cfg = PretrainedCfg()
    return normalize_batch(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), cfg.mean, cfg.std)


def image_batches(height: int, width: int, batch: int, count: int, seed: int) -> list[torch.Tensor]:
    """`count` normalized batches of `batch` dead-leaves images each."""
    return [normalize([dead_leaves(height, width, seed + 1000 * i + j)[0] for j in range(batch)]) for i in range(count)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: list[torch.Tensor], classifier: nn.Conv2d) -> None:
    """BatchNorm statistics as the cumulative average over `batches`, then a classifier bias that centres every
    class's mean logit at zero over the same images. The model ends in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    for x in batches:
        model(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()
    sums: list[torch.Tensor] = []
    hook = classifier.register_forward_hook(lambda m, inp, out: sums.append(inp[0].float().mean((0, 2, 3))))
    for x in batches:
        model(x)
    hook.remove()
    mean_feature = torch.stack(sums).mean(0)
    classifier.bias.copy_(-classifier.weight.flatten(1).float() @ mean_feature)


def labelled_batch(height: int, width: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` dead-leaves images (normalized NCHW float32) and their labels (N, H, W) int64."""
    pairs = [dead_leaves(height, width, seed + j) for j in range(batch)]
    images = normalize([p[0] for p in pairs])
    labels = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
    return images, labels


def _training_batches(
    size: tuple[int, int], batch: int, steps: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`labelled_batch` for each step (seeds ``seed + step * batch`` on), the images drawn ahead by a process per
    core: a dead-leaves image takes longer to draw than a GPU takes to train on it."""
    if steps < 1:
        return
    seeds = [seed + step * batch + j for step in range(steps) for j in range(batch)]
    with ProcessPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        pairs = pool.map(functools.partial(dead_leaves, *size), seeds, chunksize=batch)
        for _ in range(steps):
            chunk = [next(pairs) for _ in range(batch)]
            yield normalize([p[0] for p in chunk]), torch.from_numpy(np.stack([p[1] for p in chunk])).long()


def train_briefly(
    model: nn.Module,
    steps: int,
    size: tuple[int, int] = (64, 128),
    batch: int = 8,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Train `model` (a DeepLabV3Plus) on the dead-leaves task: AdamW, poly schedule, auxiliary loss 0.4.

    Fresh images every step. Returns the final loss and training pixel accuracy; leaves the model in eval mode.
    """
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss = acc = torch.zeros(())
    for step, (x, y) in enumerate(_training_batches(size, batch, steps, seed)):
        x, y = x.to(device), y.to(device)
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * (1 - step / steps) ** 0.9
        logits, aux = model(x, return_aux=True)
        loss = nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        acc = (logits.argmax(1) == y).float().mean()
    model.eval()
    return {"train_steps": steps, "train_loss": loss.item(), "train_pixel_accuracy": acc.item()}


def class_histogram(labels: torch.Tensor, num_classes: int) -> list[float]:
    """Share of pixels per class."""
    counts = torch.bincount(labels.flatten().cpu(), minlength=num_classes).double()
    return (counts / counts.sum()).tolist()
