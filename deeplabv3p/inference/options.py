"""`PredictOptions`: every option of a predict call, written once.

`predict`, `predict_iter`, ``model.predict`` and ``deeplabv3p predict`` all take these options: the Python calls as
``options=PredictOptions(...)`` and/or keyword overrides of its fields, the command line as flags built from the
fields (names, types, defaults and help). The test-time fields are an overlay on the weights' `TestSettings`
(``model.pretrained_cfg.test``): None means "as the weights say", and `settings_in_force` gives the settings in force.
Everything that can be checked without a model is checked here, when the options are made (the test-time fields by
`TestSettings`' own checks). The module imports torch only when options are made, so that ``deeplabv3p predict
--help`` builds its flags from these fields without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..fields import check_bands, check_bool, check_int, documented, option
from ..pretrained.test_settings import WHOLE_MAX_PIXELS, TestMode, TestSettings, check_test_setting

if TYPE_CHECKING:
    from torch import dtype as TorchDtype
else:
    TorchDtype = object  # at run time (the flags read the annotations): any object, so torch need not be imported

DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS's default (a 3-channel 8-bit image of 256 MiB), without PIL


@documented
@dataclass(frozen=True)
class PredictOptions:
    """How images are predicted. Frozen; ``options.replace(tta=True)`` gives a changed, re-validated copy."""

    mode: TestMode | None = option(None, help="'whole' or 'slide' inference (default: the weights' test mode)")
    tta: bool = option(
        False,
        help="multi-scale (and flip) test-time augmentation, as mmseg 0.x --aug-test produced the published ms+flip "
        "numbers; ratios and flip come from the weights unless tta_ratios / tta_flip are given",
    )
    resize: bool = option(True, help="rescale images to the weights' test scale; False feeds them at their own size")
    test_scale: tuple[int, int] | None = option(
        None,
        help="a different mmcv rescale target (a, b): long side at most max(a, b), short side at most min(a, b)",
        metavar=("A", "B"),
    )
    crop_size: int | tuple[int, int] | None = option(
        None,
        help="slide window (h, w), an int for a square (default: the weights' window)",
        metavar="N",
        aliases=("--window",),
    )
    stride: int | tuple[int, int] | None = option(
        None,
        help="slide stride (h, w), an int for a square (default: the weights', else 2/3 of the window)",
        metavar="N",
    )
    tta_ratios: tuple[float, ...] | None = option(
        None, help="TTA scale ratios that multiply the test scale (default: the weights', 0.5 ... 1.75)", metavar="R"
    )
    tta_flip: bool | None = option(None, help="TTA also on the mirrored image (default: the weights', True)")
    return_probs: bool = option(
        False, help="also return class probabilities (result.probs, (K, H, W) float32)", cli=False
    )
    dtype: TorchDtype | DtypeName | None = option(
        None,
        help="run the network under autocast in this precision: bfloat16 (CPU or GPU) or float16 (GPU); 'auto' "
        "picks what the device runs natively (bf16 on CPUs with AVX512-BF16 or AMX and on GPUs with bf16, fp16 "
        "on other GPUs, else float32) and logs the choice; None or float32: full precision",
    )
    channels_last: bool = option(
        False, help="channels-last memory format; converts the model's parameters in place (their layout only)"
    )
    max_whole_pixels: int = option(
        WHOLE_MAX_PIXELS,
        help="whole mode's pixel budget: a network input (an image after the test rescale, or a TTA view) with more "
        "pixels is slid over instead, with the weights' slide window, else their training crop, else 512x512 (and a "
        "log line); 0: no budget, every image in one pass",
        metavar="N",
    )
    max_pixels: int = option(
        MAX_PIXELS,
        help="per-image pixel budget of image files: a file whose header declares more pixels (a decompression bomb "
        "can declare 95 megapixels in 200 bytes) is refused before it is decoded; folder prediction reports and "
        "skips it. 0: no budget. The default is PIL's own limit, about 89 megapixels",
        metavar="N",
    )
    window_batch_size: int = option(4, help="slide windows per forward pass: bounds the memory for any image size")
    batch_size: int = option(
        1,
        help="images per forward pass in whole mode without TTA: consecutive images of the same size go through "
        "the network together (slide and TTA run one image at a time)",
    )
    num_workers: int = option(
        0,
        help="processes that read and resize images ahead of the network (torch DataLoader workers); 0 reads "
        "them in one background thread, or in turn when the network's CPU threads take every core",
        aliases=("--workers",),
    )
    device: str | None = option(
        None,
        help="run on this device, moving the model there (in place): cpu, cuda, cuda:1; 'cuda' under torchrun means "
        "this process's GPU (LOCAL_RANK) (default: the model's device)",
    )
    bands: tuple[int, ...] | None = option(
        None,
        help="the bands of TIFF files and rasters to read, 1-based as GDAL counts, in the order the model takes them "
        "(4, 3, 2) (default: the bands the weights were trained on, pretrained_cfg.bands, else all: "
        "deeplabv3p.inference.bands); other images are read as given",
        cli=False,  # the command line's --bands B,B,B (deeplabv3p.cli.predict)
    )

    def __post_init__(self) -> None:
        for name in ("tta", "resize", "return_probs", "channels_last"):
            check_bool(name, getattr(self, name))
        if self.test_scale is not None and not self.resize:
            raise ValueError("test_scale given with resize=False: pass one or the other")
        if not self.tta and (self.tta_ratios is not None or self.tta_flip is not None):
            raise ValueError("tta_ratios and tta_flip apply when tta=True")
        for name, setting in _OVERLAY.items():
            if getattr(self, name) is not None:
                self._set(name, check_test_setting(setting, getattr(self, name), name))
        self._set("dtype", _dtype(self.dtype))
        check_int("max_whole_pixels", self.max_whole_pixels, 0)
        check_int("max_pixels", self.max_pixels, 0)
        check_int("window_batch_size", self.window_batch_size, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("num_workers", self.num_workers, 0)
        if self.bands is not None:
            self._set("bands", check_bands("bands", self.bands))
        if self.device is not None:
            import torch

            if isinstance(self.device, torch.device):
                self._set("device", str(self.device))
            if not isinstance(self.device, str):
                raise TypeError(f"device must be a device name such as 'cpu' or 'cuda:1', got {self.device!r}")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> PredictOptions:
        """A copy with `changes` applied and validated; unknown names are a TypeError listing the accepted ones."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise TypeError(f"unknown predict option(s) {unknown}; accepted: {list(FIELDS)}")
        return dataclasses.replace(self, **changes) if changes else self


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PredictOptions))
# The options that overlay a `TestSettings` field: option name -> field.
_OVERLAY = {"mode": "mode", "test_scale": "scale", "crop_size": "window", "stride": "stride"}
_OVERLAY |= {"tta_ratios": "tta_ratios", "tta_flip": "tta_flip"}


def settings_in_force(
    weights: TestSettings, options: PredictOptions, crop_size: tuple[int, int] | None = None
) -> TestSettings:
    """The test settings in force: the weights' `TestSettings` with the `options` laid over them.

    A slide window the options ask for without giving one is the weights' (else their training crop
    `crop_size`); a window of the options' own comes with their stride or its default (`TestSettings`), never the
    weights' stride. ``resize=False`` tests images at their own size. Whole mode keeps no window.
    """
    mode = weights.mode if options.mode is None else options.mode
    changes: dict[str, Any] = {"mode": mode}
    if options.test_scale is not None or not options.resize:
        changes["scale"] = options.test_scale
    if mode == "slide":
        window = options.crop_size or weights.window or crop_size
        if window is None:
            raise ValueError(
                "mode='slide' needs a window: these weights define none, pass crop_size=(h, w) (and stride=(h, w))"
            )
        own = options.crop_size is not None or weights.window is None
        changes.update(window=window, stride=options.stride or (None if own else weights.stride))
    elif options.crop_size is not None or options.stride is not None:
        raise ValueError(f"crop_size and stride apply to mode='slide', but mode is {mode!r}")
    else:
        changes.update(window=None, stride=None)
    if options.tta_ratios is not None:
        changes["tta_ratios"] = options.tta_ratios
    if options.tta_flip is not None:
        changes["tta_flip"] = options.tta_flip
    return weights.replace(**changes)


def _dtype(value: Any) -> TorchDtype | str | None:
    """torch.float32 / bfloat16 / float16 from a dtype or its name; "auto" and None stay as they are."""
    import torch

    from .precision import DTYPES

    if value is None or value == "auto" or (isinstance(value, torch.dtype) and value in DTYPES.values()):
        return value
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    raise ValueError(
        f"dtype must be one of {[str(d) for d in DTYPES.values()]}, their names {list(DTYPES)}, 'auto' or None; "
        f"got {value!r}"
    )


def make_options(options: PredictOptions | None = None, **overrides: Any) -> PredictOptions:
    """`options` (default: all defaults) with keyword `overrides` of its fields applied."""
    if options is None:
        options = PredictOptions()
    elif not isinstance(options, PredictOptions):
        raise TypeError(
            f"options must be a deeplabv3p.PredictOptions, got {type(options).__name__}; pass predict settings as "
            "keyword arguments (mode='slide') or as PredictOptions(mode='slide')"
        )
    return options.replace(**overrides)
