"""Shared pieces of the fine-tuning tests: a tiny network, small fit settings, one CPU thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import deeplabv3p

TINY = {"iters": 4, "batch_size": 2, "crop_size": (48, 48), "num_workers": 0, "progress": False}


def tiny_model(num_classes: int = 5, seed: int = 0, **overrides) -> torch.nn.Module:
    """A DeepLabV3+ of about 60 k parameters (narrow ResNet-18), seeded."""
    torch.manual_seed(seed)
    kwargs = dict(
        encoder="resnet18",
        encoder_kwargs={"channels": (8, 16, 32, 64)},
        decoder_channels=16,
        low_level_channels=8,
        aux_head=True,
        aux_channels=8,
        num_classes=num_classes,
    )
    return deeplabv3p.create_model("deeplabv3plus", **{**kwargs, **overrides})


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one CPU thread: tiny networks gain nothing from intra-op threads, and on a busy machine two threads
    can be ten times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
