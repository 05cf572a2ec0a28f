"""Shared pieces of the fine-tuning tests: small fit settings and one CPU thread (the network: `nets.tiny_model`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

TINY = {"iters": 4, "batch_size": 2, "crop_size": (48, 48), "num_workers": 0, "progress": False}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one CPU thread: tiny networks gain nothing from intra-op threads, and on a busy machine two threads
    can be ten times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
