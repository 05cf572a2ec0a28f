"""Real network inputs for calibrating and checking exports: images through predict's own preprocessing, and the
share of labels two backends agree on over whole images."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..inference.images import expand_inputs
from ..inference.options import PredictOptions
from ..inference.pipeline import input_spec, preprocess, resolve_settings, slide_windows

if TYPE_CHECKING:
    from ..inference.backend import Backend
    from ..models.model import DeepLabV3PlusNetwork


def calibration_inputs(
    model: DeepLabV3PlusNetwork | Backend, images: Any, limit: int = 32, options: PredictOptions | None = None
) -> Iterator[np.ndarray]:
    """Network inputs ``(1, C, h, w)`` float32 of up to `limit` images, as predict makes them: read by its
    `input_spec` (the weights' bands of a TIFF), rescaled to the test scale and normalized (whole mode), or cut into
    the slide windows (slide mode)."""
    settings = resolve_settings(model, options)
    items, _ = expand_inputs(images, input_spec(model, options), name="calibration images")
    for item in items[:limit]:
        x = preprocess(item.read(), settings)
        test = settings.test
        if test.mode == "slide":
            assert test.window is not None and test.stride is not None
            height, width = x.shape[-2], x.shape[-1]
            for y1, y2, x1, x2 in slide_windows(height, width, test.window, test.stride):
                yield x[:, :, y1:y2, x1:x2].contiguous().numpy()
        else:
            yield x.numpy()


def label_agreement(
    reference: DeepLabV3PlusNetwork | Backend, candidate: DeepLabV3PlusNetwork | Backend, images: Any, **options: Any
) -> float:
    """Share of pixels whose predicted label is the same with `candidate` as with `reference`, over `images`."""
    from ..inference.pipeline import predict_iter

    same = total = 0
    for a, b in zip(predict_iter(reference, images, **options), predict_iter(candidate, images, **options)):
        same += int(np.count_nonzero(a.labels == b.labels))
        total += a.labels.size
    return same / max(total, 1)


def check_inputs(model: DeepLabV3PlusNetwork, images: Any, size: Sequence[int], limit: int = 4) -> list[torch.Tensor]:
    """Network inputs ``(1, C, H, W)`` of `size` from up to `limit` images (`calibration_inputs`, resized
    bilinearly to `size`), for proving an export on the user's own data."""
    height, width = int(size[0]), int(size[1])
    inputs = []
    for x in calibration_inputs(model, images, limit=limit):
        t = torch.from_numpy(x)
        if tuple(t.shape[-2:]) != (height, width):
            t = F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
        inputs.append(t)
        if len(inputs) >= limit:
            break
    return inputs
