"""Fixtures of the inference tests."""

from __future__ import annotations

import pytest
from parity import build


@pytest.fixture(scope="module")
def model():
    """The R-18-D8 slide-mode parity network (mmseg's weights, 19 classes), one per test module."""
    return build("r18_v1b_d8_slide")
