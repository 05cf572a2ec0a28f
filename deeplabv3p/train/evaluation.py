"""`evaluate`: mmseg's ``IoUMetric`` over a dataset, each image segmented by ``model.predict``."""

from __future__ import annotations

import functools
import typing
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..inference.pipeline import predict
from ..inference.result import default_class_names
from ..pretrained.test_settings import TestMode
from .metrics import ConfusionMatrix
from .samples import DatasetInfo, check_bands, dataset_info, evaluation_sample

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus
    from ..inference.result import SegmentationResult

__all__ = ["evaluate"]


def class_names(info: DatasetInfo, model: DeepLabV3Plus) -> list[str]:
    """The dataset's class names, else the model's weights', else ``class_0``...; whichever has one a class."""
    num_classes = model.num_classes
    for names in (info.classes, getattr(model.pretrained_cfg, "classes", None)):
        if names and len(names) == num_classes:
            return list(names)
    return list(default_class_names(num_classes))


@torch.no_grad()
def evaluate(
    model: DeepLabV3Plus,
    dataset: Any,
    *,
    mode: TestMode | None = None,
    tta: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """mmseg's ``IoUMetric`` over `dataset`: each image goes through ``model.predict`` (whole/slide, optional TTA, as
    the model's pretrained_cfg says unless `mode` is given) and its labels are compared with the ground truth at
    the original resolution. Images are read by the rule training reads them by (`deeplabv3p.train.samples`).

    Returns ``{"aAcc", "mIoU", "mAcc"}`` plus per-class ``"IoU"`` and ``"Acc"`` dicts, in percent; NaN marks a
    class with no pixels to judge it by (left out of the means). In a process group each rank evaluates its share
    of the images and the counts are summed, so every rank returns the same numbers.
    """
    if not hasattr(model, "predict") and not hasattr(model, "config"):
        raise TypeError(f"model must be a deeplabv3p model with predict(), got {type(model).__name__}")
    # Its own predict() (a deeplabv3p.DeepLabV3Plus, or a stand-in), else the pipeline's for a plain network.
    segment = model.predict if hasattr(model, "predict") else functools.partial(predict, model)
    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty")
    info = dataset_info(dataset, model)
    in_chans = getattr(getattr(model, "config", None), "in_chans", None)  # any object with predict() will do
    if in_chans is not None:
        check_bands(info, "evaluation", in_chans)
    if device is not None:
        model.to(distributed.resolve_device(device))
    was_training = model.training
    model.eval()
    rank, world = distributed.current()
    matrix = ConfusionMatrix(model.num_classes, info.ignore_index)
    kwargs: dict[str, Any] = {"tta": tta}
    if mode is not None:
        kwargs["mode"] = mode
    indices = range(rank, len(dataset), world)
    for i in tqdm(indices, desc="evaluate", disable=not (progress and rank == 0), leave=False):
        image, mask = evaluation_sample(dataset, info, i, "evaluation")
        result = typing.cast("SegmentationResult", segment(image, **kwargs))  # one image in, one result out
        matrix.update(torch.as_tensor(np.asarray(result.labels)), torch.from_numpy(mask))
    distributed.all_reduce_sum(matrix.matrix)
    model.train(was_training)
    return matrix.compute(class_names(info, model))
