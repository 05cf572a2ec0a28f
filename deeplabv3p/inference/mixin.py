"""`PredictMixin`: what the inference layer adds to the network as methods (``predict``,
``optimize_for_inference``).

Each method is the function of the same name with the model as first argument, with exactly its signature; the
functions stay the one definition (`pipeline.predict`, `optimize.optimize_for_inference`). It is composed with the
network into ``deeplabv3p.DeepLabV3Plus`` (`model.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from . import optimize, pipeline

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

    from ..models.model import DeepLabV3PlusNetwork
    from .options import PredictOptions
    from .result import SegmentationResult

    _Network = DeepLabV3PlusNetwork  # the type checker sees the class the mixin is composed with
else:
    _Network = object


class PredictMixin(_Network):
    """``predict`` and ``optimize_for_inference`` as methods of a `DeepLabV3PlusNetwork`."""

    def predict(
        self, inputs: Any, options: PredictOptions | None = None, **overrides: Any
    ) -> SegmentationResult | list[SegmentationResult]:
        """Segment images (paths, a directory, PIL, numpy, tensors, or a list) with the weights' test-time
        settings: labels at each image's original size.

        `options` is a `deeplabv3p.PredictOptions`; keyword `overrides` are its fields (``mode="slide"``,
        ``tta=True``, ``dtype=torch.bfloat16``, ...). See `deeplabv3p.inference.pipeline.predict`.
        """
        return pipeline.predict(self, inputs, options, **overrides)

    def optimize_for_inference(
        self,
        *,
        fold_bn: bool = True,
        channels_last: bool = True,
        inplace: bool = False,
        dtype: torch.dtype | str | None = None,
    ) -> Self:
        """An eval-mode copy (or, with `inplace`, this model) with BatchNorm folded into the convolutions and
        channels_last weights (same logits), running in `dtype` (``"auto"``: what this device runs natively; see
        ``inference_dtype``). See `deeplabv3p.inference.optimize.optimize_for_inference`; for inference only."""
        return optimize.optimize_for_inference(
            self, fold_bn=fold_bn, channels_last=channels_last, inplace=inplace, dtype=dtype
        )
