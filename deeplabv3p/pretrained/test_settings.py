"""`TestSettings`: how a set of weights is tested (mmseg's test pipeline and ``test_cfg``), defined once.

`PretrainedCfg` holds the settings of the weights, `TrainConfig` those a fine-tuned model is validated and saved
with, and `PredictOptions` is an overlay on them for one predict call. Each setting is checked here, by
`check_test_setting`, whichever of them it arrives through.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from ..fields import JsonRecord, check_bool, check_choice, check_float, check_pair, documented, option

TestMode = Literal["whole", "slide"]
TEST_MODES: tuple[TestMode, ...] = typing.get_args(TestMode)
MMSEG_TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# Whole mode's pixel budget: a network input (one image, one TTA view) larger than this many pixels is slid over
# instead (`over_budget`, `budget_window`). 4096 x 2048 keeps every zoo setting whole (mmseg parity: the largest, the
# Cityscapes whole tags' 2048x1024 test scale at TTA ratio 1.75, is 6.4 M pixels), where a 4000x6000 photo tested
# whole by a model fine-tuned without a test scale took 11.6 GB with ResNet-18.
WHOLE_MAX_PIXELS = 4096 * 2048
# The window of that slide when the weights define neither a slide window nor a training crop.
BUDGET_WINDOW = (512, 512)


def default_stride(window: tuple[int, int]) -> tuple[int, int]:
    """The slide stride of a window when none is given: two thirds of it, rounded up (mmseg's own 769 -> 513,
    480 -> 320)."""
    return math.ceil(window[0] * 2 / 3), math.ceil(window[1] * 2 / 3)


def over_budget(height: int, width: int, max_pixels: int) -> bool:
    """Whether a whole-mode network input of ``height x width`` is over the pixel budget `max_pixels` (0: none)."""
    return max_pixels > 0 and height * width > max_pixels


def budget_window(weights: TestSettings, crop_size: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(window, stride)`` of the slide that replaces whole mode over the pixel budget: the weights' slide window
    and stride, else their training crop `crop_size` (else `BUDGET_WINDOW`) with the default stride."""
    if weights.window is not None and weights.stride is not None:
        return weights.window, weights.stride
    window = crop_size or BUDGET_WINDOW
    return window, default_stride(window)


def check_test_setting(field: str, value: Any, name: str | None = None) -> Any:
    """`value` of the `TestSettings` field `field`, checked and normalised (pairs and ratios as tuples); errors name
    it `name` (default: `field`), the name the caller knows it by (``crop_size`` for a predict call's window)."""
    name = name or field
    if field == "mode":
        return check_choice(name, value, TEST_MODES)
    if field in ("keep_ratio", "tta_flip"):
        return check_bool(name, value)
    if field in ("scale", "window", "stride"):
        return None if value is None else check_pair(name, value)
    if field == "tta_ratios":
        if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
            raise ValueError(f"{name} must be a non-empty sequence of positive numbers, got {value!r}")
        return tuple(check_float(f"{name} entries", r, 0.0, min_open=True) for r in value)
    raise AssertionError(f"no test setting {field!r}")


@documented
@dataclass(frozen=True)
class TestSettings(JsonRecord):
    """How images are tested, with mmseg's semantics. Frozen and validated; a slide ``window`` without a
    ``stride`` gets two thirds of it, rounded up (`default_stride`)."""

    __test__ = False  # not a pytest test class

    mode: TestMode = option("whole", help="how images are tested: whole or slide", flat="test_mode")
    scale: tuple[int, int] | None = option(
        None,
        help="the test-time rescale target (a, b): with keep_ratio, mmcv's long side at most max(a, b) and short "
        "side at most min(a, b) (default: none, images at their own size; fit's default: the training scale)",
        flat="test_scale", metavar=("A", "B"),
    )  # fmt: skip
    keep_ratio: bool = option(True, help="keep the aspect ratio when rescaling to the test scale")
    window: tuple[int, int] | None = option(
        None, help="slide window (h, w) of test mode slide", flat="slide_crop", metavar=("H", "W")
    )
    stride: tuple[int, int] | None = option(
        None, help="slide stride (h, w) of test mode slide (default: 2/3 of the window, rounded up)",
        flat="slide_stride", metavar=("H", "W"),
    )  # fmt: skip
    tta_ratios: tuple[float, ...] = option(
        MMSEG_TTA_RATIOS, help="test-time augmentation: the ratios that multiply the test scale", metavar="R"
    )
    tta_flip: bool = option(True, help="test-time augmentation also on the mirrored image")

    def __post_init__(self) -> None:
        for name in ("mode", "scale", "keep_ratio", "window", "stride", "tta_ratios", "tta_flip"):
            object.__setattr__(self, name, check_test_setting(name, getattr(self, name)))
        if self.window is None and self.stride is not None:
            raise ValueError(f"stride {self.stride} given without a slide window: give window (h, w) too")
        if self.mode == "slide" and self.window is None:
            raise ValueError(
                "test mode 'slide' needs a slide window (h, w): window= in TestSettings, slide_crop= in fit() and "
                "PretrainedCfg files, --slide-crop H W on the command line"
            )
        if self.window is not None and self.stride is None:
            object.__setattr__(self, "stride", default_stride(self.window))
