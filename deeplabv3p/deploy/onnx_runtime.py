"""`OnnxSegmenter`: an exported ``.onnx`` file (fp32 or INT8) as a predict backend, run by onnxruntime.

    OnnxSegmenter("model.onnx").predict("street.png")

segments as ``model.predict("street.png")`` does: the test-time settings come from the file's metadata (written
by ``deeplabv3p.deploy.export``). Needs onnxruntime (``pip install 'deeplabv3p[onnx]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ..fields import check_file, check_int
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg
from .backend import DeployedBackend
from .metadata import KEY
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .packages import require


class OnnxSegmenter(DeployedBackend):
    """An ONNX DeepLabV3+ run by onnxruntime on the CPU.

    Args:
        path: an ``.onnx`` file from ``deeplabv3p.deploy.export`` (or ``deeplabv3p export``, ``--int8`` included).
        threads: intra-op threads of onnxruntime (default: torch's thread count, the same budget as PyTorch).
        providers: onnxruntime execution providers available in the installed build (default:
            ``["CPUExecutionProvider"]``); one that is not available is refused rather than silently replaced.
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
        ort = require("onnxruntime", "onnx", "running an ONNX export")
        path = check_file("ONNX file", path)
        providers = list(providers or ["CPUExecutionProvider"])
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(
                f"providers={providers}: {missing} not available in this onnxruntime build (available: {available}); "
                "install the onnxruntime package built for it (e.g. onnxruntime-gpu) or leave providers unset"
            )
        options = ort.SessionOptions()
        if threads is not None:
            check_int("threads", threads, 1)
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"onnxruntime cannot load {str(path)!r}: {e}") from e
        stored = session.get_modelmeta().custom_metadata_map.get(KEY)
        self._setup(path, stored, config=config, pretrained_cfg=pretrained_cfg, threads=threads)
        self.ort_session = session
        names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ValueError(
                f"{str(path)!r} has inputs {names[0]} and outputs {names[1]}; a deeplabv3p export has "
                f"[{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
            )
        self._check_shapes(session.get_inputs()[0].shape, session.get_outputs()[0].shape)

    def run_settings(self) -> str:
        return f"providers={self.ort_session.get_providers()}"

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.ort_session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
