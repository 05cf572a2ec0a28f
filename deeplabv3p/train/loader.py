"""The training data stream: an endless, sharded, resumable sample order; per-sample seeded augmentation; padded
uint8 batches (the trainer normalises them on the device with `deeplabv3p.inference.pipeline.normalize`).

Reproducibility does not depend on worker count, world size or interruptions: the order comes from
``DistributedSampler`` (seed + epoch), and every sample's augmentation runs under its own seed derived from
(seed, epoch, position), so sample k of the stream is the same whoever loads it and whenever. Resuming skips the
samples already consumed.

An error in a worker process reaches the trainer as itself (its type and message, `WorkerError`), not as torch's
"Caught ValueError in DataLoader worker process 1. Original Traceback ..." wrapper.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any, NoReturn, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info
from torchvision import tv_tensors

from ..inference.images import ImageSpec
from .samples import read_mask, training_sample

__all__ = ["AugmentedDataset", "PadCollate", "TrainSampler", "WorkerError", "batches"]


class WorkerError:
    """An exception raised in a DataLoader worker, handed to the main process as the batch (torch would wrap it in
    a "Caught ... in DataLoader worker process" message with the worker's traceback); `batches` re-raises it."""

    def __init__(self, error: Exception) -> None:
        self.type, self.args, self.text = type(error), error.args, str(error)

    def reraise(self) -> NoReturn:
        try:
            error = self.type(*self.args)
        except Exception:  # an exception class that cannot be rebuilt from its args
            error = RuntimeError(f"{self.type.__name__}: {self.text}")
        raise error from None


def _in_worker(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`; in a DataLoader worker process an exception is returned as a `WorkerError`."""
    try:
        return function(*args)
    except Exception as e:
        if get_worker_info() is None:
            raise
        return WorkerError(e)


def batches(loader: DataLoader) -> Iterator[Any]:
    """`loader`'s batches; a worker's error is raised here as itself."""
    for batch in loader:
        if isinstance(batch, WorkerError):
            batch.reraise()
        yield batch


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
    """``dataset[index]`` read by `spec` (`training_sample`: the one image rule, floats on the 0..255 scale), passed
    through `transform` under the key's seed, returned as (image, int64 mask).

    Whatever their form, samples reach `transform` as ``tv_tensors.Image`` and ``tv_tensors.Mask``, so every
    geometric step moves both alike (torchvision treats a plain tensor as an image only when it comes first, and
    leaves any other plain tensor as it is).
    """

    def __init__(self, dataset: Any, transform: Callable[[Any, Any], tuple[Any, Any]] | None, spec: ImageSpec) -> None:
        self.dataset = dataset
        self.transform = transform
        self.spec = spec

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return cast(tuple[torch.Tensor, torch.Tensor], _in_worker(self._sample, key))

    def _sample(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        with seeded(seed):
            image, mask = training_sample(self.dataset, index, self.spec)
            if self.transform is None:
                return image, mask
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return _augmented(image, index), read_mask(mask, f"training sample {index} (augmented)")


def _augmented(image: Any, index: int) -> torch.Tensor:
    """The augmented image as a plain ``(C, H, W)`` uint8 or float32 tensor, checked: a `transform` of one's own
    may return something else."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.dtype not in (torch.uint8, torch.float32):
        shape = tuple(image.shape) if hasattr(image, "shape") else None
        raise TypeError(
            f"training sample {index}: the augmented image must be (C, H, W) uint8 or float32 on the 0..255 scale, "
            f"got {type(image).__name__} {getattr(image, 'dtype', '')} {shape}"
        )
    return image.as_subclass(torch.Tensor)


class PadCollate:
    """Stack samples padded at the bottom/right to a common size (at least `size`): images with 0, masks with
    `ignore_index`. Returns ``(images (N, C, H, W), masks int64 (N, H, W), sizes int64 (N, 2))``, the images
    uint8, or float32 when any sample is float (16-bit multi-band data)."""

    def __init__(self, size: tuple[int, int] | None = None, ignore_index: int = 255) -> None:
        self.size = size
        self.ignore_index = ignore_index

    def __call__(self, batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        failed = next((item for item in batch if isinstance(item, WorkerError)), None)
        if failed is not None:
            return failed  # `batches` raises it
        return cast(tuple[torch.Tensor, ...], _in_worker(self._collate, batch))

    def _collate(self, batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
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
        bands = {img.shape[0] for img, _ in batch}
        if len(bands) > 1:
            raise ValueError(f"the images of one batch have different band counts {sorted(bands)}")
        dtype = torch.float32 if any(img.is_floating_point() for img, _ in batch) else torch.uint8
        images = torch.zeros(len(batch), bands.pop(), height, width, dtype=dtype)
        masks = torch.full((len(batch), height, width), self.ignore_index, dtype=torch.int64)
        sizes = torch.zeros(len(batch), 2, dtype=torch.int64)
        for i, (image, mask) in enumerate(batch):
            h, w = mask.shape
            images[i, :, :h, :w] = image
            masks[i, :h, :w] = mask
            sizes[i] = torch.tensor([h, w])
        return images, masks, sizes
