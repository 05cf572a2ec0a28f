"""Image sizes read height x width everywhere (as torch's (N, C, H, W)), and the messages say so."""

from __future__ import annotations

import numpy as np
import pytest

from deeplabv3p.inference.result import SegmentationResult, default_palette


def _result() -> SegmentationResult:
    labels = np.zeros((3, 5), dtype=np.int64)  # 3 rows (height), 5 columns (width)
    return SegmentationResult(labels=labels, classes=("a", "b"), palette=default_palette(2), name="tall")


def test_the_result_repr_gives_height_x_width_and_says_so():
    assert "size=3x5 (HxW)" in repr(_result())


def test_an_overlay_of_another_size_is_refused_with_both_sizes_as_height_x_width():
    with pytest.raises(ValueError, match=r"overlay image is 5x3 but the labels are 3x5 \(height x width\)"):
        _result().overlay(image=np.zeros((5, 3, 3), dtype=np.uint8))
