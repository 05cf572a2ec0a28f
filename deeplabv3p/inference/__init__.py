"""Inference: image reading, mmcv-exact resizing, the whole/slide/TTA pipeline over a backend (PyTorch, or an
exported file from `deeplabv3p.deploy`), `SegmentationResult`, sharded and resumable folder prediction, streamed
georeferenced rasters (`predict_raster`), fast paths (`optimize_for_inference`, ``dtype="auto"``). Never imports the
training or deployment packages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is what runs (loaded on first access, see deeplabv3p.lazy)
    from .backend import Backend, TorchBackend
    from .optimize import fold_batchnorm, optimize_for_inference
    from .options import PredictOptions
    from .pipeline import predict, predict_iter
    from .raster_predict import RasterOptions, RasterSummary, predict_raster
    from .result import SegmentationResult
    from .writer import WriteSummary, merge_manifest, write_predictions

_EXPORTS = {
    "Backend": "backend",
    "TorchBackend": "backend",
    "fold_batchnorm": "optimize",
    "optimize_for_inference": "optimize",
    "PredictOptions": "options",
    "predict": "pipeline",
    "predict_iter": "pipeline",
    "RasterOptions": "raster_predict",
    "RasterSummary": "raster_predict",
    "predict_raster": "raster_predict",
    "SegmentationResult": "result",
    "WriteSummary": "writer",
    "merge_manifest": "writer",
    "write_predictions": "writer",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
