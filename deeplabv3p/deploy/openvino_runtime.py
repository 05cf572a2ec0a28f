"""`OpenVinoSegmenter`: an exported OpenVINO ``.xml`` (fp32 or NNCF INT8) as a predict backend, on the CPU.

    OpenVinoSegmenter("model.xml").predict("street.png")

segments as ``model.predict("street.png")`` does: the test-time settings come from the model's rt_info (written by
``deeplabv3p.deploy.export``). Needs openvino (``pip install 'deeplabv3p[openvino]'``).

Precision is explicit: OpenVINO's CPU plugin runs full-precision layers in bfloat16 by default on CPUs with
AVX512-BF16 or AMX, which moves logits by ~1e-2 of their range (outside the fp32 bound of
`deeplabv3p.deploy.proof`). The segmenter compiles with ``INFERENCE_PRECISION_HINT`` = ``"f32"`` unless told
otherwise and checks that the compiled model reports it; an INT8 model keeps its quantized layers in int8 and runs
the layers kept in full precision in f32.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from ..fields import check_choice, check_file
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg
from .backend import DeployedBackend
from .openvino_export import read_metadata
from .packages import require

Precision = Literal["f32", "bf16"]
PRECISIONS: tuple[str, ...] = ("f32", "bf16")


class OpenVinoSegmenter(DeployedBackend):
    """An OpenVINO DeepLabV3+ compiled for the CPU with a latency hint (one request at a time).

    Args:
        path: an ``.xml`` file from ``deeplabv3p.deploy.export`` (or ``deeplabv3p export --format openvino``,
            ``--int8`` included), with its ``.bin`` beside it.
        threads: OpenVINO's inference threads (default: torch's thread count, the same budget as PyTorch).
        precision: the precision of the layers that are not quantized: ``"f32"`` (default, within the fp32 bound)
            or ``"bf16"`` (faster on CPUs with AVX512-BF16/AMX, but not within it; labels usually still agree).
        config, pretrained_cfg: the model's `ModelConfig` and `PretrainedCfg`, for files without deeplabv3p
            metadata (converted by other tools); they replace the file's when given.
    """

    name = "openvino"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        precision: Precision = "f32",
        config: ModelConfig | None = None,
        pretrained_cfg: PretrainedCfg | None = None,
    ) -> None:
        ov = require("openvino", "openvino", "running an OpenVINO export")
        path = check_file("OpenVINO file", path)
        check_choice("precision", precision, PRECISIONS)
        core = ov.Core()
        try:
            ov_model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError with its own text for unreadable or incomplete files
            raise ValueError(
                f"OpenVINO cannot read {str(path)!r} (an .xml with its .bin beside it): {str(e).splitlines()[0]}"
            ) from e
        self._setup(path, read_metadata(ov_model), config=config, pretrained_cfg=pretrained_cfg, threads=threads)
        if len(ov_model.inputs) != 1 or len(ov_model.outputs) != 1:
            raise ValueError(
                f"{str(path)!r} has {len(ov_model.inputs)} inputs and {len(ov_model.outputs)} outputs; a deeplabv3p "
                "export has one of each (image in, logits out)"
            )
        self._check_shapes(_dims(ov_model.inputs[0]), _dims(ov_model.outputs[0]))
        self.static_batch = _dims(ov_model.inputs[0])[0]  # a static export takes batches of its example's size
        self.compiled = core.compile_model(
            ov_model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": precision,
            },
        )
        self.precision = inference_precision(self.compiled)
        if precision == "f32" and self.precision != "f32":
            raise RuntimeError(f"OpenVINO compiled {str(path)!r} for {self.precision} although f32 was asked for")
        self._request = self.compiled.create_infer_request()

    def run_settings(self) -> str:
        return f"precision={self.precision}"

    def run(self, x: np.ndarray) -> np.ndarray:
        step = self.static_batch
        if step is not None and x.shape[0] != step:
            if x.shape[0] % step:
                raise ValueError(
                    f"{str(self.path)!r} was exported for batches of {step} and was given {x.shape[0]} images: "
                    "export it with dynamic shapes (no --static) or predict with batch_size a multiple of it"
                )
            return np.concatenate([self.run(x[i : i + step]) for i in range(0, x.shape[0], step)])
        self._request.infer({0: x})
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)


def inference_precision(compiled: Any) -> str:
    """The precision a compiled OpenVINO model runs its full-precision layers in (``"f32"``, ``"bf16"``...)."""
    return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())


def _dims(port: Any) -> list[int | None]:
    """A port's shape with None for each dynamic dimension."""
    return [None if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
