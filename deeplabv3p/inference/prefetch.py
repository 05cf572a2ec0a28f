"""Reading and resizing images ahead of the network, so that decoding never waits on the forward pass and back.

Each image becomes a `Prepared` item: its index, its original size and the resized images the network will see
(one per TTA ratio, else one), not yet normalized (uint8 stays uint8: a quarter of the bytes to move). With
``num_workers=0`` one background thread prepares the next image while the current one is segmented (unless the
network's torch threads take every CPU core: then images are read in turn); with more,
torch DataLoader worker processes do (each with one torch thread). On CUDA the prepared images are in pinned memory,
so the copies to the GPU can be asynchronous. Items come out in input order; an image that cannot be read raises
its error when its turn comes, as it would without prefetching, or with ``skip_unreadable=True`` comes out as an
`Unreadable` item (folder prediction reports it and goes on).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from .images import ImageItem, UnreadableImageError
from .resize import resize_for_test

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Prepared:
    """One image ready for the network: `views` are its resized images (one per TTA ratio), unnormalized."""

    index: int
    size: tuple[int, int]
    views: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class ViewSpec:
    """How a read image becomes its views: the test scale, keep_ratio and the ratios (``(1.0,)`` without TTA).
    How it is read is the item's own `ImageSpec` (`ImageItem.read`)."""

    test_scale: tuple[int, int] | None
    keep_ratio: bool
    ratios: tuple[float, ...]


@dataclass(frozen=True)
class Unreadable:
    """An input whose file could not be read (empty, cut short, not an image, over the pixel budget): its index
    and the error, which names the file and the reason."""

    index: int
    error: Exception


# What reading one image raises when its file cannot be decoded (or is gone); an image the model cannot take (another
# band count) or a missing reader (ImportError) is an error of the whole run, raised as it is.
UNREADABLE_ERRORS = (UnreadableImageError, OSError)


def prepare(
    item: ImageItem, index: int, spec: ViewSpec, pin: bool = False, skip_unreadable: bool = False
) -> Prepared | Unreadable:
    """Read `item` and resize it to each of its network-input sizes; with `skip_unreadable`, a read that fails
    gives an `Unreadable` instead of raising."""
    try:
        image = item.read()
    except UNREADABLE_ERRORS as e:
        if not skip_unreadable:
            raise
        return Unreadable(index, e)
    height, width = image.shape[-2:]
    views = tuple(resize_for_test(image, spec.test_scale, spec.keep_ratio, ratio) for ratio in spec.ratios)
    if pin:
        views = tuple(v.pin_memory() for v in views)
    return Prepared(index, (height, width), views)


class _PreparedImages(Dataset):
    """The items as a map-style dataset for DataLoader workers; a failure is returned, to be raised in order."""

    def __init__(self, items: list[ImageItem], spec: ViewSpec, skip_unreadable: bool = False) -> None:
        self.items, self.spec, self.skip_unreadable = items, spec, skip_unreadable

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(
        self, index: int
    ) -> tuple[int, tuple[int, int], tuple[torch.Tensor, ...]] | Unreadable | BaseException:
        try:
            p = prepare(self.items[index], index, self.spec, skip_unreadable=self.skip_unreadable)
        except Exception as e:  # raised in the main process when this image's turn comes
            return e
        return p if isinstance(p, Unreadable) else (p.index, p.size, p.views)


def made_ahead(make: Callable[[_T], _R], inputs: Sequence[_T], read_ahead: bool = True) -> Iterator[_R]:
    """``make(x)`` for each of `inputs`, in order; with `read_ahead` (and more than one input) one background thread
    makes the next while the caller uses the current. A failure is raised when its turn comes. The one reading
    thread of `prefetched` and of raster windows (`deeplabv3p.inference.raster_predict`)."""
    if len(inputs) <= 1 or not read_ahead:
        for x in inputs:
            yield make(x)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(make, inputs[0])
        for i in range(len(inputs)):
            current = pending.result()
            if i + 1 < len(inputs):
                pending = pool.submit(make, inputs[i + 1])
            yield current


def reads_ahead(device: torch.device) -> bool:
    """Whether a background reading thread pays off: when the network runs elsewhere (a GPU) or leaves CPU cores
    free. When its torch threads take every core, reading ahead only takes time from them (4% slower measured,
    R-50-D8 at 1024x2048 on 2 cores), so images are then read in turn."""
    return device.type != "cpu" or torch.get_num_threads() < len(os.sched_getaffinity(0))


def prefetched(
    items: list[ImageItem], spec: ViewSpec, num_workers: int = 0, pin: bool = False, read_ahead: bool = True,
    skip_unreadable: bool = False,
) -> Iterator[Prepared | Unreadable]:  # fmt: skip
    """`Prepared` items in input order, made ahead of use by a thread (``num_workers=0``) or worker processes.

    ``read_ahead=False`` (with ``num_workers=0``): each item is made when it is asked for, in the caller's thread.
    ``skip_unreadable``: an image that cannot be read comes out as an `Unreadable` (else its error is raised).
    """
    if not items:
        return
    if num_workers == 0:
        yield from made_ahead(lambda i: prepare(items[i], i, spec, pin, skip_unreadable), range(len(items)), read_ahead)
        return
    on_gpu = [item for item in items if isinstance(item.source, torch.Tensor) and item.source.device.type != "cpu"]
    if on_gpu:
        raise ValueError(
            f"num_workers={num_workers} prepares images in worker processes, which cannot take GPU tensors "
            f"({on_gpu[0].name} is on {on_gpu[0].source.device}): pass CPU images or num_workers=0"
        )
    loader = DataLoader(
        _PreparedImages(items, spec, skip_unreadable),
        batch_size=None,
        shuffle=False,
        num_workers=min(num_workers, len(items)),
        pin_memory=pin,
    )
    for sample in loader:
        if isinstance(sample, BaseException):
            raise sample
        if isinstance(sample, Unreadable):
            yield sample
            continue
        index, size, views = sample
        yield Prepared(int(index), (int(size[0]), int(size[1])), tuple(views))
