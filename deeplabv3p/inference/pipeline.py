"""Test-time inference with mmseg's semantics: images -> resize -> normalize -> whole or slide -> TTA -> labels.

The steps are plain functions so that each can be used and tested alone:

- `resolve_settings`: the test settings of the model's weights (``model.pretrained_cfg.test``) with the options
  laid over them (`deeplabv3p.inference.options.settings_in_force`), plus the weights' normalisation;
- `preprocess`: mmcv keep-ratio rescale (OpenCV-exact, see `resize.py`) and mean/std normalization;
- `whole_inference` / `slide_inference`: network logits at the network-input size (slide: windows placed and
  clipped as mmseg does, logits summed and divided by the per-pixel window count); whole mode slides instead when a
  network input is over its pixel budget (``max_whole_pixels``, see `infer_logits`);
- `segment_logits` (single scale) / `segment_probs` (mmseg 0.x ``--aug-test``: softmax probabilities at the
  original size averaged over scales and flips): scores at the image's original size;
- `predict` / `predict_iter`: any input form -> `SegmentationResult` objects.

The network is anything that maps a normalized batch to logits: a `DeepLabV3Plus`, or a `Backend`
(`TorchBackend` adds autocast and channels_last, `deeplabv3p.deploy` runs exported files with their runtimes). `predict`
reads and resizes images ahead of the network (`prefetch`), batches equal-sized images in whole mode, and under
torchrun `predict_iter(..., shard=True)` takes every world-th image.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..fields import check_int, check_pair
from ..pretrained.config import PretrainedCfg, pretrained_cfg_for
from ..pretrained.test_settings import TestSettings, budget_window, over_budget
from .backend import Backend, as_backend
from .bands import choose_bands
from .images import ImageItem, ImageSpec, expand_inputs
from .labels import class_indices
from .options import PredictOptions, make_options, settings_in_force
from .prefetch import Prepared, Unreadable, ViewSpec, prefetched, reads_ahead
from .resize import resize_for_test
from .result import SegmentationResult, default_class_names, default_palette

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork

logger = logging.getLogger("deeplabv3p")

# The network as the pipeline sees it: a normalized batch (N, C, H, W) -> logits (N, K, H, W) at the input size.
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InferenceSettings:
    """What the pipeline applies to the images of one predict call: the test settings in force (`TestSettings`:
    mmseg's ``test_cfg`` and test pipeline), whether TTA is on, the weights' normalisation and ``align_corners``,
    and whole mode's pixel budget (0: none) with the slide ``(window, stride)`` that replaces it over the budget."""

    test: TestSettings
    tta: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    align_corners: bool
    max_whole_pixels: int = 0
    budget_slide: tuple[tuple[int, int], tuple[int, int]] | None = None

    def slides_over_budget(self, height: int, width: int) -> bool:
        """Whether a network input of ``height x width`` is slid over because whole mode's budget is exceeded."""
        return self.test.mode == "whole" and over_budget(height, width, self.max_whole_pixels)


def _weights_cfg(model: DeepLabV3PlusNetwork | Backend) -> PretrainedCfg:
    """What `model`'s weights are (`pretrained_cfg_for`): a `Backend` has the same ``config`` (`ModelConfig`) and
    ``pretrained_cfg`` as a model (an ONNX file's come from its metadata), so both are described the same way."""
    return pretrained_cfg_for(model.config, model.pretrained_cfg)


def input_spec(model: DeepLabV3PlusNetwork | Backend, options: PredictOptions | None = None) -> ImageSpec:
    """How predict reads `model`'s input images (`ImageSpec`): its input channels, the pixel budget, and the bands
    of TIFF files (the caller's ``bands``, else the weights' trained bands: `deeplabv3p.inference.bands`). Whatever
    else reads images for this model (calibration, sizing) reads them by this spec."""
    opts = make_options(options)
    bands = choose_bands(opts.bands, _weights_cfg(model))
    return ImageSpec(model.config.in_chans, max_pixels=opts.max_pixels or None, bands=bands)


def resolve_settings(
    model: DeepLabV3PlusNetwork | Backend, options: PredictOptions | None = None, **overrides: Any
) -> InferenceSettings:
    """The test settings of `model`'s weights (``model.pretrained_cfg.test``) with the `PredictOptions` laid over
    them (`deeplabv3p.inference.options.settings_in_force`), and the weights' normalisation.

    `model` is a `DeepLabV3Plus` or a `Backend`: anything with a ``config`` (`ModelConfig`) and a
    ``pretrained_cfg``. A slide window not set by the weights defaults to their training crop; so does the slide
    that replaces whole mode over its pixel budget (`budget_window`).
    """
    opts = make_options(options, **overrides)
    cfg = _weights_cfg(model)
    return InferenceSettings(
        test=settings_in_force(cfg.test, opts, cfg.crop_size),
        tta=opts.tta,
        mean=cfg.mean,  # one value per band of the model (pretrained_cfg_for)
        std=cfg.std,
        align_corners=model.config.align_corners,
        max_whole_pixels=opts.max_whole_pixels,
        budget_slide=budget_window(cfg.test, cfg.crop_size),
    )


def normalize(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], sizes: torch.Tensor | None = None
) -> torch.Tensor:
    """An image ``(C, H, W)`` or a batch ``(N, C, H, W)`` on the 0..255 scale -> float32 ``(x - mean) / std`` as a
    batch ``(N, C, H, W)``, for testing and training alike.

    `sizes` ``(N, 2)`` are the images' own ``(h, w)`` in a batch padded at the bottom and right: the padding is set
    to 0 after normalisation, as mmseg's data preprocessor does.
    """
    x = images.to(torch.float32, copy=True)  # a copy even when float32 already: normalised in place below
    if x.dim() == 3:
        x = x[None]
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    x.sub_(mean_t).div_(std_t)
    height, width = x.shape[2:]
    if sizes is not None and bool((sizes[:, 0] < height).any() or (sizes[:, 1] < width).any()):
        rows = torch.arange(height, device=x.device).view(1, -1, 1) < sizes[:, 0].to(x.device).view(-1, 1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1) < sizes[:, 1].to(x.device).view(-1, 1, 1)
        x = x * (rows & cols).unsqueeze(1)
    return x


def _ratios(settings: InferenceSettings) -> tuple[float, ...]:
    """The rescale ratios an image is inferred at: the TTA ratios, or 1."""
    return settings.test.tta_ratios if settings.tta else (1.0,)


def _view_spec(settings: InferenceSettings) -> ViewSpec:
    return ViewSpec(settings.test.scale, settings.test.keep_ratio, _ratios(settings))


def preprocess(image: torch.Tensor, settings: InferenceSettings, ratio: float = 1.0) -> torch.Tensor:
    """The network input for ``image`` ``(C, H, W)``: rescaled to the test scale (times ``ratio``), normalized."""
    return normalize(
        resize_for_test(image, settings.test.scale, settings.test.keep_ratio, ratio), settings.mean, settings.std
    )


def whole_inference(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(N, K, h, w)`` of a normalized batch in one pass (mmseg ``whole`` mode)."""
    return forward(x)


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
    forward: Forward,
    x: torch.Tensor,
    crop_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    window_batch_size: int = 4,
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
        logits = forward(crops)
        if canvas is None:
            canvas = logits.new_zeros((n, logits.shape[1], height, width))
        for i, (y1, y2, x1, x2) in enumerate(chunk):
            canvas[:, :, y1:y2, x1:x2] += logits[i * n : (i + 1) * n]
            count[:, :, y1:y2, x1:x2] += 1
    assert canvas is not None
    return canvas / count


def infer_logits(
    forward: Forward, x: torch.Tensor, settings: InferenceSettings, window_batch_size: int = 4
) -> torch.Tensor:
    """Logits at the network-input size, in the settings' mode; in whole mode, an input over the pixel budget
    (``settings.max_whole_pixels``) is slid over with ``settings.budget_slide``, so memory stays bounded."""
    test = settings.test
    if test.mode == "slide":
        assert test.window is not None and test.stride is not None  # TestSettings: slide has both
        return slide_inference(forward, x, test.window, test.stride, window_batch_size)
    if settings.budget_slide is not None and settings.slides_over_budget(x.shape[-2], x.shape[-1]):
        window, stride = settings.budget_slide
        return slide_inference(forward, x, window, stride, window_batch_size)
    return whole_inference(forward, x)


def _to_size(scores: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=align_corners)


def scores_of_views(
    forward: Forward,
    views: Sequence[torch.Tensor],
    size: tuple[int, int],
    settings: InferenceSettings,
    window_batch_size: int = 4,
    probs: bool = True,
) -> torch.Tensor:
    """Scores ``(N, K, H, W)`` at the original size `size` from the resized images the network sees.

    `views` holds, for each ratio (``settings.test.tta_ratios`` with TTA, else just 1), the image(s) rescaled for it,
    not yet normalized: ``(C, h, w)`` or ``(N, C, h, w)`` on the network's device. Without TTA the result is the
    logits (their softmax with `probs`); with TTA it is mmseg 0.x ``--aug-test``: every view is inferred as is and
    (with ``test.tta_flip``) mirrored, its logits resized to `size`, softmaxed, mirrored back, and all are averaged.
    """
    if not settings.tta:
        x = normalize(views[0], settings.mean, settings.std)
        logits = _to_size(infer_logits(forward, x, settings, window_batch_size), size, settings.align_corners)
        return logits.softmax(dim=1) if probs else logits
    flips = (False, True) if settings.test.tta_flip else (False,)
    total: torch.Tensor | None = None
    for view in views:
        x = normalize(view, settings.mean, settings.std)
        for flip in flips:
            logits = infer_logits(forward, x.flip(-1) if flip else x, settings, window_batch_size)
            view_probs = _to_size(logits, size, settings.align_corners).softmax(dim=1)
            if flip:
                view_probs = view_probs.flip(-1)
            total = view_probs if total is None else total.add_(view_probs)
    assert total is not None
    return total / (len(views) * len(flips))


def segment_logits(
    forward: Forward, image: torch.Tensor, settings: InferenceSettings, window_batch_size: int = 4
) -> torch.Tensor:
    """Single-scale logits ``(1, K, H, W)`` of one image ``(C, H, W)`` at its original size (mmseg simple_test)."""
    single = dataclasses.replace(settings, tta=False)
    view = resize_for_test(image, settings.test.scale, settings.test.keep_ratio)
    return scores_of_views(forward, [view], (image.shape[-2], image.shape[-1]), single, window_batch_size, False)


def segment_probs(
    forward: Forward, image: torch.Tensor, settings: InferenceSettings, window_batch_size: int = 4
) -> torch.Tensor:
    """Class probabilities ``(1, K, H, W)`` of one image ``(C, H, W)`` at its original size: the softmax of
    `segment_logits`, or with ``settings.tta`` mmseg 0.x ``--aug-test`` (see `scores_of_views`)."""
    views = [resize_for_test(image, settings.test.scale, settings.test.keep_ratio, r) for r in _ratios(settings)]
    return scores_of_views(forward, views, (image.shape[-2], image.shape[-1]), settings, window_batch_size, True)


@dataclass(frozen=True)
class _Run:
    """Everything a predict call fixed before the first image."""

    backend: Backend
    settings: InferenceSettings
    classes: tuple[str, ...]
    palette: np.ndarray
    return_probs: bool
    window_batch_size: int
    batch_size: int
    num_workers: int


def _start(
    model: DeepLabV3PlusNetwork | Backend,
    inputs: Any,
    options: PredictOptions | None,
    overrides: dict[str, Any],
    shard: bool = False,
) -> tuple[list[ImageItem], bool, _Run]:
    """Check the inputs and options of a predict call before any image is read."""
    from ..distributed import process_share

    opts = make_options(options, **overrides)
    backend = as_backend(model)
    items, batched = expand_inputs(inputs, input_spec(backend, opts))
    if shard:
        rank, world = process_share()
        items = items[rank::world]
    backend = backend.configure(opts)
    settings = resolve_settings(backend, opts)
    cfg = _weights_cfg(backend)
    num_classes = backend.num_classes
    classes = tuple(cfg.classes) if len(cfg.classes) == num_classes else default_class_names(num_classes)
    palette = np.asarray(cfg.palette, dtype=np.uint8) if len(cfg.palette) == num_classes else None
    run = _Run(
        backend=backend,
        settings=settings,
        classes=classes,
        palette=default_palette(num_classes) if palette is None else palette,
        return_probs=opts.return_probs,
        window_batch_size=opts.window_batch_size,
        batch_size=opts.batch_size if settings.test.mode == "whole" and not settings.tta else 1,
        num_workers=opts.num_workers,
    )
    return items, batched, run


def _groups(stream: Iterator[Prepared | Unreadable], batch_size: int) -> Iterator[list[Prepared] | Unreadable]:
    """Consecutive prepared images of the same original and network-input size, up to `batch_size` at a time
    (a full group is passed on at once, without waiting for the next image); an `Unreadable` passes on alone, in
    its place."""
    group: list[Prepared] = []
    for p in stream:
        if isinstance(p, Unreadable):
            if group:
                yield group
                group = []
            yield p
            continue
        if group and (p.size != group[0].size or p.views[0].shape != group[0].views[0].shape):
            yield group
            group = []
        group.append(p)
        if len(group) == batch_size:
            yield group
            group = []
    if group:
        yield group


def _segment(run: _Run, group: list[Prepared], items: list[ImageItem]) -> list[SegmentationResult]:
    backend, settings = run.backend, run.settings
    device = backend.device
    started = time.perf_counter()
    with backend.session():
        views = [
            torch.stack([p.views[i] for p in group]).to(device, non_blocking=True) if len(group) > 1
            else group[0].views[i].to(device, non_blocking=True)
            for i in range(len(group[0].views))
        ]  # fmt: skip
        want_probs = settings.tta or run.return_probs
        _log_budget(settings, views, items[group[0].index].name)
        try:
            scores = scores_of_views(backend, views, group[0].size, settings, run.window_batch_size, want_probs)
        except ValueError as e:
            first = items[group[0].index]
            more = f" and {len(group) - 1} more of that size" if len(group) > 1 else ""
            raise ValueError(f"{first.name} ({group[0].size[0]}x{group[0].size[1]}, HxW){more}: {e}") from e
        labels = class_indices(scores, dim=1).cpu().numpy()
        probs = scores.float().cpu().numpy() if run.return_probs else None
    seconds = (time.perf_counter() - started) / len(group)
    return [
        SegmentationResult(
            labels=labels[i],
            classes=run.classes,
            palette=run.palette,
            probs=None if probs is None else probs[i],
            source=items[p.index].source,
            name=items[p.index].name,
            seconds=seconds,
            bands=items[p.index].spec.bands,
        )
        for i, p in enumerate(group)
    ]


def _log_budget(settings: InferenceSettings, views: Sequence[torch.Tensor], name: str) -> None:
    """Log, once per image, that whole mode slides over it because a network input is over the pixel budget."""
    largest = max(views, key=lambda v: v.shape[-2] * v.shape[-1])
    height, width = largest.shape[-2:]
    if settings.budget_slide is None or not settings.slides_over_budget(height, width):
        return
    (wh, ww), (sh, sw) = settings.budget_slide
    logger.info(
        "%s: network input %dx%d (H x W, %d pixels) is over whole mode's pixel budget of %d (max_whole_pixels): "
        "sliding over it with window %dx%d, stride %dx%d; max_whole_pixels=0 (--max-whole-pixels 0) tests it whole",
        name, height, width, height * width, settings.max_whole_pixels, wh, ww, sh, sw,
    )  # fmt: skip


def _results(
    run: _Run, items: list[ImageItem], skip_unreadable: bool = False
) -> Iterator[SegmentationResult | Unreadable]:
    pin = run.backend.device.type == "cuda"
    spec = _view_spec(run.settings)
    read_ahead = reads_ahead(run.backend.device)
    stream = prefetched(items, spec, run.num_workers, pin, read_ahead, skip_unreadable)
    for group in _groups(stream, run.batch_size):
        if isinstance(group, Unreadable):
            yield group
        else:
            yield from _segment(run, group, items)


def predict(
    model: DeepLabV3PlusNetwork | Backend, inputs: Any, options: PredictOptions | None = None, **overrides: Any
) -> SegmentationResult | list[SegmentationResult]:
    """Segment images with the test-time semantics of the model's weights.

    Args:
        model: a `DeepLabV3Plus` (it runs on its own device, or ``options.device``, under
            ``torch.inference_mode`` and is left in the training mode it had), or a `Backend` such as
            one of `deeplabv3p.deploy.load`'s (an exported file run by its runtime).
        inputs: a file path (multi-band TIFFs too), a directory, a PIL image, a numpy array ``(H, W, C)``
            (uint8, uint16 or float in [0, 1]), a tensor ``(C, H, W)`` or ``(N, C, H, W)``, or a list of these;
            sizes may differ. C is 3 for RGB models and ``in_chans`` for multi-band ones; see
            `deeplabv3p.inference.images` for the rules on grayscale, alpha, 16-bit and float images.
        options: a `PredictOptions` (default: the weights' test-time settings, full precision).
        **overrides: fields of `PredictOptions` applied on top of `options`, e.g. ``mode="slide"``, ``tta=True``,
            ``dtype="auto"``, ``batch_size=4``; an unknown name is a TypeError.

    Returns:
        A `SegmentationResult` for a single image; a list of them for a list, a directory or a 4-D batch.
        For large directories use `predict_iter`, which streams.
    """
    items, batched, run = _start(model, inputs, options, overrides)
    results = cast(list[SegmentationResult], list(_results(run, items)))  # unreadable images raise
    return results if batched else results[0]


def predict_iter(
    model: DeepLabV3PlusNetwork | Backend,
    inputs: Any,
    options: PredictOptions | None = None,
    *,
    shard: bool = False,
    **overrides: Any,
) -> Iterator[SegmentationResult]:
    """`predict` one result at a time, with the same arguments: images are read ahead (by a background thread, or
    ``num_workers`` processes), so a directory of any size streams through in constant memory.

    With ``shard=True`` this process yields only its share: every ``world_size``-th image from its rank, the rank
    and world size of the process group or of torchrun's environment (``RANK``, ``WORLD_SIZE``). Inputs and
    options are checked when this is called, before the first image is read.
    """
    items, _, run = _start(model, inputs, options, overrides, shard=shard)
    return cast(Iterator[SegmentationResult], _results(run, items))  # unreadable images raise


def predict_iter_skipping(
    model: DeepLabV3PlusNetwork | Backend, inputs: Any, options: PredictOptions | None = None, **overrides: Any
) -> Iterator[SegmentationResult | Unreadable]:
    """`predict_iter` for folder prediction: an image that cannot be read (empty, cut short, not an image, over
    the pixel budget) comes out as an `Unreadable` (its index and the error naming the file) in its place, so
    that one bad file does not stop the others."""
    items, _, run = _start(model, inputs, options, overrides)
    return _results(run, items, skip_unreadable=True)
