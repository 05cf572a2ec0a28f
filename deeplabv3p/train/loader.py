"""The training data stream: an endless, sharded, resumable sample order; per-sample seeded augmentation; padded
batches normalised on the device.

Reproducibility does not depend on worker count, world size or interruptions: the order comes from
``DistributedSampler`` (seed + epoch), and every sample's augmentation runs under its own seed derived from
(seed, epoch, position), so sample k of the stream is the same whoever loads it and whenever. Resuming skips the
samples already consumed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ["AugmentedDataset", "PadCollate", "TrainSampler", "normalize_batch"]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A well-mixed 63-bit seed for one sample of the stream."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and random for the block, restoring their previous states after it."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class TrainSampler(Sampler[tuple[int, int]]):
    """Endless stream of ``(index, augmentation_seed)`` keys for one rank.

    Epoch e is ``DistributedSampler(shuffle=True, seed=seed)`` at ``set_epoch(e)`` (padded to a multiple of the
    world size, this rank's share); `start` skips that many of this rank's samples (those already trained on).
    """

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if num_samples < 1:
            raise ValueError(f"the training set is empty (num_samples={num_samples})")
        indices = cast("Dataset[int]", range(num_samples))  # the sampler only takes its len()
        self.sampler: DistributedSampler[int] = DistributedSampler(
            indices, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_epoch = self.sampler.num_samples
        first_epoch, offset = divmod(self.start, per_epoch)
        for epoch in count(first_epoch):
            self.sampler.set_epoch(epoch)
            for j, index in enumerate(self.sampler):
                if epoch == first_epoch and j < offset:
                    continue
                yield index, sample_seed(self.seed, epoch, j * self.world_size + self.rank)


class AugmentedDataset(Dataset):
    """``dataset[index]`` passed through `transform` under the key's seed, returned as (uint8 image, int64 mask).

    Samples must come as ``(image, mask)``: the image a uint8 tensor ``(3, H, W)`` or array ``(H, W, 3)``, the mask
    ``(H, W)`` integers.
    """

    def __init__(self, dataset: Any, transform: Callable[[Any, Any], tuple[Any, Any]] | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        with seeded(seed):
            sample = self.dataset[index]
            if not isinstance(sample, Sequence) or len(sample) != 2:
                raise TypeError(f"training samples must be (image, mask) pairs, got {type(sample).__name__}")
            image, mask = sample
            if self.transform is not None:
                image, mask = self.transform(image, mask)
        return _as_image(image, index), _as_mask(mask, index)


def _as_image(image: Any, index: int) -> torch.Tensor:
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3:
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.dtype != torch.uint8:
        shape = tuple(image.shape) if hasattr(image, "shape") else None
        raise TypeError(
            f"sample {index}: the image must be uint8 (3, H, W) (or an (H, W, 3) array) before normalisation, got "
            f"{type(image).__name__} {getattr(image, 'dtype', '')} {shape}; training normalises with the model's "
            "mean/std itself"
        )
    return image.as_subclass(torch.Tensor)


def _as_mask(mask: Any, index: int) -> torch.Tensor:
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if mask.dim() == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.dim() != 2 or mask.is_floating_point():
        raise TypeError(f"sample {index}: the mask must be integer (H, W), got {mask.dtype} {tuple(mask.shape)}")
    return mask.as_subclass(torch.Tensor).long()


class PadCollate:
    """Stack samples padded at the bottom/right to a common size (at least `size`): images with 0, masks with
    `ignore_index`. Returns ``(images uint8 (N, 3, H, W), masks int64 (N, H, W), sizes int64 (N, 2))``."""

    def __init__(self, size: tuple[int, int] | None = None, ignore_index: int = 255) -> None:
        self.size = size
        self.ignore_index = ignore_index

    def __call__(self, batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        for image, mask in batch:
            if image.shape[1:] != mask.shape:
                raise ValueError(
                    f"an augmented image is {tuple(image.shape[1:])} but its mask {tuple(mask.shape)}; "
                    "transforms must keep them aligned"
                )
        height = max(img.shape[1] for img, _ in batch)
        width = max(img.shape[2] for img, _ in batch)
        if self.size is not None:
            height, width = max(height, self.size[0]), max(width, self.size[1])
        images = torch.zeros(len(batch), batch[0][0].shape[0], height, width, dtype=torch.uint8)
        masks = torch.full((len(batch), height, width), self.ignore_index, dtype=torch.int64)
        sizes = torch.zeros(len(batch), 2, dtype=torch.int64)
        for i, (image, mask) in enumerate(batch):
            h, w = mask.shape
            images[i, :, :h, :w] = image
            masks[i, :h, :w] = mask
            sizes[i] = torch.tensor([h, w])
        return images, masks, sizes


def normalize_batch(
    images: torch.Tensor, sizes: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``(x - mean) / std`` on a uint8 batch (0..255 scale), padding set to 0 afterwards as mmseg's preprocessor."""
    x = images.float()
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x = (x - mean_t) / std_t
    height, width = x.shape[2:]
    if bool((sizes[:, 0] < height).any() or (sizes[:, 1] < width).any()):
        rows = torch.arange(height, device=x.device).view(1, -1, 1) < sizes[:, 0].to(x.device).view(-1, 1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1) < sizes[:, 1].to(x.device).view(-1, 1, 1)
        x = x * (rows & cols).unsqueeze(1)
    return x
