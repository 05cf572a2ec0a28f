"""Test-time inference with mmseg's semantics: images -> resize -> normalize -> whole or slide -> TTA -> labels.

The steps are plain functions so that each can be used and tested alone:

- `resolve_settings`: the test-time settings of the model's weights (``model.pretrained_cfg``) with overrides;
- `preprocess`: mmcv keep-ratio rescale (OpenCV-exact, see `resize.py`) and mean/std normalization;
- `whole_inference` / `slide_inference`: network logits at the network-input size (slide: windows placed and
  clipped as mmseg does, logits summed and divided by the per-pixel window count);
- `segment_logits` (single scale) / `segment_probs` (mmseg 0.x ``--aug-test``: softmax probabilities at the
  original size averaged over scales and flips): scores at the image's original size;
- `predict` / `predict_iter`: any input form -> `SegmentationResult` objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.config import check_int, check_pair
from ..pretrained.config import PretrainedCfg
from .images import ImageItem, expand_inputs
from .options import PredictOptions, make_options
from .resize import resize_image, scaled_test_size
from .result import SegmentationResult, default_class_names, default_palette

if TYPE_CHECKING:
    from ..models.model import DeepLabV3Plus


@dataclass(frozen=True)
class InferenceSettings:
    """How images are tested: mmseg's ``test_cfg`` and test pipeline for one set of weights.

    ``test_scale`` is the mmcv rescale target ``(a, b)`` or None for no resize; ``crop_size`` and ``stride`` are the
    slide window ``(h, w)``; ``tta_ratios`` multiply ``test_scale`` (mmseg 0.x), or the image size without one.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_scale: tuple[int, int] | None
    keep_ratio: bool
    mode: str
    crop_size: tuple[int, int] | None
    stride: tuple[int, int] | None
    tta: bool
    tta_ratios: tuple[float, ...]
    tta_flip: bool
    align_corners: bool


def _weights_cfg(model: DeepLabV3Plus) -> PretrainedCfg:
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg if cfg is not None else PretrainedCfg(num_classes=model.config.num_classes)


def resolve_settings(
    model: DeepLabV3Plus, options: PredictOptions | None = None, **overrides: Any
) -> InferenceSettings:
    """The model's test-time settings (from ``model.pretrained_cfg``) with the `PredictOptions` applied.

    A slide window not set by the weights defaults to the weights' training crop, with a stride of two thirds
    of it rounded up (mmseg's own 769 -> 513 and 480 -> 320).
    """
    opts = make_options(options, **overrides)
    cfg = _weights_cfg(model)
    mode = cfg.test_mode if opts.mode is None else opts.mode
    scale = opts.test_scale if opts.test_scale is not None else (cfg.test_scale if opts.resize else None)

    crop_hw = stride_hw = None
    if mode == "slide":
        crop = opts.crop_size if opts.crop_size is not None else (cfg.slide_crop or cfg.crop_size)
        if crop is None:
            raise ValueError(
                "mode='slide' needs a window: these weights define none, pass crop_size=(h, w) (and stride=(h, w))"
            )
        crop_hw = check_pair("crop_size", crop)
        stride = opts.stride
        if stride is None and opts.crop_size is None and cfg.slide_crop is not None and cfg.slide_stride is not None:
            stride = cfg.slide_stride
        elif stride is None:
            stride = (math.ceil(crop_hw[0] * 2 / 3), math.ceil(crop_hw[1] * 2 / 3))
        stride_hw = check_pair("stride", stride)
    elif opts.crop_size is not None or opts.stride is not None:
        raise ValueError(f"crop_size and stride apply to mode='slide', but mode is {mode!r}")

    ratios = tuple(cfg.tta_ratios if opts.tta_ratios is None else opts.tta_ratios)
    flip = cfg.tta_flip if opts.tta_flip is None else opts.tta_flip
    if len(cfg.mean) != model.config.in_chans or len(cfg.std) != model.config.in_chans:
        raise ValueError(
            f"predict reads RGB images, but the model takes in_chans={model.config.in_chans} channels; "
            "call model(x) with your own normalized input instead"
        )
    return InferenceSettings(
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        test_scale=scale,
        keep_ratio=cfg.keep_ratio,
        mode=mode,
        crop_size=crop_hw,
        stride=stride_hw,
        tta=opts.tta,
        tta_ratios=tuple(float(r) for r in ratios),
        tta_flip=flip,
        align_corners=model.config.align_corners,
    )


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(C, H, W)`` image on the 0..255 scale -> ``(1, C, H, W)`` float32 ``(x - mean) / std``."""
    x = image.to(torch.float32)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return ((x - mean_t) / std_t)[None]


def preprocess(image: torch.Tensor, settings: InferenceSettings, ratio: float = 1.0) -> torch.Tensor:
    """The network input for ``image`` ``(3, H, W)``: rescaled to the test scale (times ``ratio``), normalized."""
    height, width = image.shape[-2:]
    size = scaled_test_size(height, width, settings.test_scale, settings.keep_ratio, ratio)
    return normalize(resize_image(image, size), settings.mean, settings.std)


def _forward(model: DeepLabV3Plus, x: torch.Tensor, dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if dtype is None or dtype == torch.float32:
        return model(x)
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        return model(x).float()


def whole_inference(
    model: DeepLabV3Plus, x: torch.Tensor, dtype: torch.dtype | None = None, channels_last: bool = False
) -> torch.Tensor:
    """Logits ``(N, K, h, w)`` of a normalized batch in one pass (mmseg ``whole`` mode)."""
    return _forward(model, x, dtype, channels_last)


def slide_windows(
    height: int, width: int, crop_size: tuple[int, int], stride: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """mmseg's slide windows ``(y1, y2, x1, x2)``, row by row.

    ``max(H - crop + stride - 1, 0) // stride + 1`` windows per axis; a window running past the border is moved
    back inside, so every window is a full crop (or the whole side, when the image is smaller than the crop).
    """
    (crop_h, crop_w), (stride_h, stride_w) = crop_size, stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for r in range(rows):
        for c in range(cols):
            y2 = min(r * stride_h + crop_h, height)
            x2 = min(c * stride_w + crop_w, width)
            windows.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return windows


def slide_inference(
    model: DeepLabV3Plus,
    x: torch.Tensor,
    crop_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    window_batch_size: int = 4,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits ``(N, K, h, w)`` of a normalized batch stitched from sliding windows (mmseg ``slide`` mode).

    Each window's logits (at the window size) are summed into a canvas, which is divided by how many windows
    cover each pixel. At most ``window_batch_size`` windows go through the network at once (at least one per
    image), which bounds memory for any image size.
    """
    crop, step = check_pair("crop_size", crop_size), check_pair("stride", stride)
    check_int("window_batch_size", window_batch_size, 1)
    n, _, height, width = x.shape
    windows = slide_windows(height, width, crop, step)
    canvas: torch.Tensor | None = None
    count = torch.zeros((1, 1, height, width), dtype=torch.float32, device=x.device)
    per_forward = max(1, window_batch_size // n)
    for start in range(0, len(windows), per_forward):
        chunk = windows[start : start + per_forward]
        crops = torch.cat([x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        logits = _forward(model, crops, dtype, channels_last)
        if canvas is None:
            canvas = logits.new_zeros((n, logits.shape[1], height, width))
        for i, (y1, y2, x1, x2) in enumerate(chunk):
            canvas[:, :, y1:y2, x1:x2] += logits[i * n : (i + 1) * n]
            count[:, :, y1:y2, x1:x2] += 1
    assert canvas is not None
    return canvas / count


def infer_logits(
    model: DeepLabV3Plus,
    x: torch.Tensor,
    settings: InferenceSettings,
    window_batch_size: int = 4,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits at the network-input size, in the settings' mode."""
    if settings.mode == "slide":
        assert settings.crop_size is not None and settings.stride is not None
        return slide_inference(model, x, settings.crop_size, settings.stride, window_batch_size, dtype, channels_last)
    return whole_inference(model, x, dtype, channels_last)


def _to_size(scores: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=align_corners)


def segment_logits(
    model: DeepLabV3Plus,
    image: torch.Tensor,
    settings: InferenceSettings,
    window_batch_size: int = 4,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Single-scale logits ``(1, K, H, W)`` of one image ``(3, H, W)`` at its original size (mmseg simple_test)."""
    x = preprocess(image, settings)
    logits = infer_logits(model, x, settings, window_batch_size, dtype, channels_last)
    return _to_size(logits, tuple(image.shape[-2:]), settings.align_corners)


def segment_probs(
    model: DeepLabV3Plus,
    image: torch.Tensor,
    settings: InferenceSettings,
    window_batch_size: int = 4,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Class probabilities ``(1, K, H, W)`` of one image ``(3, H, W)`` at its original size.

    With ``settings.tta`` this is mmseg 0.x ``--aug-test``: for each ratio the image is rescaled to the ratio
    times the test scale, inferred as is and (with ``tta_flip``) mirrored; each view's logits are resized to
    the original size, softmaxed, mirrored back and averaged. Without it, the softmax of `segment_logits`.
    """
    if not settings.tta:
        return segment_logits(model, image, settings, window_batch_size, dtype, channels_last).softmax(dim=1)
    size = tuple(image.shape[-2:])
    flips = (False, True) if settings.tta_flip else (False,)
    total: torch.Tensor | None = None
    for ratio in settings.tta_ratios:
        x = preprocess(image, settings, ratio)
        for flip in flips:
            view = x.flip(-1) if flip else x
            logits = infer_logits(model, view, settings, window_batch_size, dtype, channels_last)
            probs = _to_size(logits, size, settings.align_corners).softmax(dim=1)
            if flip:
                probs = probs.flip(-1)
            total = probs if total is None else total.add_(probs)
    assert total is not None
    return total / (len(settings.tta_ratios) * len(flips))


def _check_dtype(dtype: torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (None: full precision), refusing float16 where it has no fast kernels."""
    if dtype is None or dtype == torch.float32:
        return None
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("dtype=torch.float16 needs a GPU; use torch.bfloat16 for reduced precision on the CPU")
    return dtype


def _read_ahead(items: list[ImageItem]) -> Iterator[tuple[ImageItem, torch.Tensor]]:
    """Read the images in order, the next one in a background thread while the current one is segmented."""
    if len(items) == 1:
        yield items[0], items[0].read()
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(items[0].read)
        for i, item in enumerate(items):
            image = pending.result()
            if i + 1 < len(items):
                pending = pool.submit(items[i + 1].read)
            yield item, image


@dataclass(frozen=True)
class _Run:
    """Everything a predict call fixed before the first image."""

    settings: InferenceSettings
    classes: tuple[str, ...]
    palette: np.ndarray
    return_probs: bool
    window_batch_size: int
    dtype: torch.dtype | None
    channels_last: bool


def _segment_item(model: DeepLabV3Plus, item: ImageItem, image: torch.Tensor, run: _Run) -> SegmentationResult:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            image = image.to(device, non_blocking=True)
            args = (model, image, run.settings, run.window_batch_size, run.dtype, run.channels_last)
            segment = segment_probs if run.settings.tta or run.return_probs else segment_logits
            try:
                scores = segment(*args)
            except ValueError as e:
                raise ValueError(f"{item.name} ({image.shape[1]}x{image.shape[2]}): {e}") from e
            labels = scores[0].argmax(dim=0).cpu().numpy()
            probs = scores[0].float().cpu().numpy() if run.return_probs else None
    finally:
        model.train(was_training)
    return SegmentationResult(
        labels=labels, classes=run.classes, palette=run.palette, probs=probs, source=item.source, name=item.name
    )


def _start(
    model: DeepLabV3Plus, inputs: Any, options: PredictOptions | None, overrides: dict[str, Any]
) -> tuple[list[ImageItem], bool, _Run]:
    """Check the inputs and options of a predict call before any image is read."""
    opts = make_options(options, **overrides)
    items, batched = expand_inputs(inputs)
    settings = resolve_settings(model, opts)
    run_dtype = _check_dtype(opts.dtype, next(model.parameters()).device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    cfg = _weights_cfg(model)
    num_classes = model.config.num_classes
    classes = tuple(cfg.classes) if len(cfg.classes) == num_classes else default_class_names(num_classes)
    palette = np.asarray(cfg.palette, dtype=np.uint8) if len(cfg.palette) == num_classes else None
    run = _Run(
        settings=settings,
        classes=classes,
        palette=default_palette(num_classes) if palette is None else palette,
        return_probs=opts.return_probs,
        window_batch_size=opts.window_batch_size,
        dtype=run_dtype,
        channels_last=opts.channels_last,
    )
    return items, batched, run


def _results(model: DeepLabV3Plus, items: list[ImageItem], run: _Run) -> Iterator[SegmentationResult]:
    for item, image in _read_ahead(items):
        yield _segment_item(model, item, image, run)


def predict(
    model: DeepLabV3Plus, inputs: Any, options: PredictOptions | None = None, **overrides: Any
) -> SegmentationResult | list[SegmentationResult]:
    """Segment images with the test-time semantics of the model's weights.

    Args:
        model: a `DeepLabV3Plus`; it runs on its own device under ``torch.inference_mode`` and is left in the
            training mode it had.
        inputs: a file path, a directory, a PIL image, a numpy array ``(H, W, 3)`` (RGB uint8), a tensor
            ``(3, H, W)`` or ``(N, 3, H, W)``, or a list of these; sizes may differ. See `deeplabv3p.images`
            for the rules on grayscale, alpha, 16-bit and float images.
        options: a `PredictOptions` (default: the weights' test-time settings, full precision).
        **overrides: fields of `PredictOptions` applied on top of `options`, e.g. ``mode="slide"``, ``tta=True``,
            ``dtype=torch.bfloat16``; an unknown name is a TypeError.

    Returns:
        A `SegmentationResult` for a single image; a list of them for a list, a directory or a 4-D batch.
        For large directories use `predict_iter`, which streams.
    """
    items, batched, run = _start(model, inputs, options, overrides)
    results = list(_results(model, items, run))
    return results if batched else results[0]


def predict_iter(
    model: DeepLabV3Plus, inputs: Any, options: PredictOptions | None = None, **overrides: Any
) -> Iterator[SegmentationResult]:
    """`predict` one result at a time, with the same arguments: images are read one by one (the next one in a
    background thread), so a directory of any size streams through in constant memory.

    Inputs and options are checked when this is called, before the first image is read.
    """
    items, _, run = _start(model, inputs, options, overrides)
    return _results(model, items, run)
