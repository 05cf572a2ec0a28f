"""`OnnxSegmenter`: an exported ``.onnx`` file (fp32 or INT8) as a predict backend, run by onnxruntime.

It is a `Backend`, so the predict pipeline is the same one the PyTorch model goes through: mmcv-exact resize,
normalization, whole / slide / TTA, resize back and argmax; only the network call differs. The test-time settings
come from the file's metadata (written by `deeplabv3p.inference.export_onnx`), so

    OnnxSegmenter("model.onnx").predict("street.png")

segments as ``model.predict("street.png")`` does. Needs ``onnxruntime`` (``pip install 'deeplabv3p[onnx]'``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fields import check_int
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg, pretrained_cfg_for
from ..pretrained.saved import parse_config
from .backend import Backend
from .export import INPUT_NAME, META_CONFIG, OUTPUT_NAME, require_package
from .options import PredictOptions
from .result import SegmentationResult


class OnnxSegmenter(Backend):
    """An ONNX DeepLabV3+ run by onnxruntime on the CPU (or the given execution providers).

    Args:
        path: an ``.onnx`` file from `deeplabv3p.inference.export_onnx` (or ``deeplabv3p export``, ``--int8`` included).
        threads: intra-op threads of onnxruntime (default: torch's thread count, the same budget as PyTorch).
        providers: onnxruntime execution providers (default: ``["CPUExecutionProvider"]``).
        config, pretrained_cfg: the model's `ModelConfig` and `PretrainedCfg`, for files without deeplabv3p
            metadata (exported by other tools); they replace the file's when given.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        config: ModelConfig | None = None,
        pretrained_cfg: PretrainedCfg | None = None,
    ) -> None:
        ort = require_package("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {str(self.path)!r} does not exist")
        if threads is not None:
            check_int("threads", threads, 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.ort_session = ort.InferenceSession(
                str(self.path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"onnxruntime cannot load {str(self.path)!r}: {e}") from e
        names = [i.name for i in self.ort_session.get_inputs()], [o.name for o in self.ort_session.get_outputs()]
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ValueError(
                f"{str(self.path)!r} has inputs {names[0]} and outputs {names[1]}; a deeplabv3p export has "
                f"[{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
            )
        stored = self.ort_session.get_modelmeta().custom_metadata_map.get(META_CONFIG)
        if stored is not None:
            file_config, file_cfg = parse_config(json.loads(stored), origin=f"{self.path} metadata")
        elif config is None:
            raise ValueError(
                f"{str(self.path)!r} has no deeplabv3p metadata (exported by another tool or an older deeplabv3p): "
                "pass config=ModelConfig(...) and pretrained_cfg=PretrainedCfg(...), or export it again"
            )
        else:
            file_config, file_cfg = config, pretrained_cfg_for(config)  # the bare architecture's settings
        self.config = config or file_config
        self.pretrained_cfg = pretrained_cfg or file_cfg
        self.device = torch.device("cpu")
        self._check_channels(self.ort_session.get_inputs()[0].shape, self.ort_session.get_outputs()[0].shape)

    def _check_channels(self, input_shape: Sequence[Any], output_shape: Sequence[Any]) -> None:
        """The file's input bands and output class planes against its config, where the shapes say them (a
        dynamic dimension is checked on the first call): a mismatch would give labels the config cannot name."""
        for what, shape, expected, field in (
            ("input", input_shape, self.config.in_chans, "in_chans"),
            ("output", output_shape, self.config.num_classes, "num_classes"),
        ):
            if len(shape) != 4:
                raise ValueError(
                    f"{str(self.path)!r} has an {what} of shape {list(shape)}; a segmentation network's {what} is "
                    "(N, C, H, W): export the model with deeplabv3p.inference.export_onnx"
                )
            found = shape[1]
            if isinstance(found, int) and found != expected:
                raise ValueError(
                    f"{str(self.path)!r} has an {what} of {found} channels but its config says {field}={expected}: "
                    f"pass config=ModelConfig(..., {field}={found}) for this file, or export the model again"
                )

    def configure(self, options: PredictOptions) -> OnnxSegmenter:
        """Refuse the options that apply to PyTorch only: the file runs in the precision it holds, on the CPU."""
        if options.dtype not in (None, "auto", torch.float32):
            raise ValueError(
                f"dtype={options.dtype} applies to the PyTorch backend; an ONNX file runs in the precision it was "
                "exported in (for INT8: deeplabv3p export --int8)"
            )
        if options.channels_last:
            raise ValueError("channels_last applies to the PyTorch backend; onnxruntime chooses its own layouts")
        if options.device not in (None, "cpu"):
            raise ValueError(f"device={options.device!r}: OnnxSegmenter runs on the CPU")
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.config.output_stride
        if x.dim() != 4 or x.shape[1] != self.config.in_chans or min(x.shape[2:]) < m:
            raise ValueError(
                f"input of shape {tuple(x.shape)}: the network takes (N, {self.config.in_chans}, H, W) with H and W "
                f"at least {m}"
            )
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits = self.ort_session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
        self._check_channels(array.shape, logits.shape)
        return torch.from_numpy(logits)

    def predict(
        self, inputs: Any, options: PredictOptions | None = None, **overrides: Any
    ) -> SegmentationResult | list[SegmentationResult]:
        """`deeplabv3p.predict` with this file as the network."""
        from .pipeline import predict

        return predict(self, inputs, options, **overrides)

    def predict_iter(
        self, inputs: Any, options: PredictOptions | None = None, *, shard: bool = False, **overrides: Any
    ) -> Iterator[SegmentationResult]:
        """`deeplabv3p.predict_iter` with this file as the network."""
        from .pipeline import predict_iter

        return predict_iter(self, inputs, options, shard=shard, **overrides)

    def __repr__(self) -> str:
        return f"OnnxSegmenter({str(self.path)!r}, {self.config.architecture}, {self.num_classes} classes)"
