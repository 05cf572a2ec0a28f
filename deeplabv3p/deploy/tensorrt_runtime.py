"""`TensorRTSegmenter`: a TensorRT ``.engine`` as a predict backend on the GPU, and the export's proof of it.

    TensorRTSegmenter("model.engine").predict("street.png")

segments as ``model.predict("street.png", device="cuda")`` does, with the test-time settings of the sidecar
``model.engine.json``. Input and output are torch CUDA tensors bound to the engine directly (no copy through the
host), run on torch's current CUDA stream. Needs an NVIDIA GPU and ``pip install 'deeplabv3p[tensorrt]'``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fields import check_file
from ..inference.options import PredictOptions
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg
from .backend import DeployedBackend
from .exporter import check_sizes
from .metadata import read_sidecar
from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .proof import INT8, ExportCheckError, compare, synthetic_inputs
from .tensorrt_export import SUFFIX, logger, require_tensorrt

# An engine does not record its precision, and an fp16 one cannot meet the fp32 logits bound: the export proves
# every engine against the reduced-precision bound (labels >= 99.5% equal); its report gives the logit difference.
BOUNDS = INT8


class TensorRTSegmenter(DeployedBackend):
    """A TensorRT engine run on a CUDA GPU.

    Args:
        path: a ``.engine`` file from ``deeplabv3p.deploy.export(..., format="tensorrt")`` built on this kind of GPU
            with this TensorRT version.
        device: the CUDA device (default: the current one).
        config, pretrained_cfg: the model's `ModelConfig` and `PretrainedCfg`, for engines without the metadata
            sidecar; they replace the file's when given.
    """

    name = "tensorrt"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        config: ModelConfig | None = None,
        pretrained_cfg: PretrainedCfg | None = None,
    ) -> None:
        trt = require_tensorrt("running a TensorRT engine")
        path = check_file("TensorRT engine", path)
        if not path.name.endswith(SUFFIX):
            raise ValueError(f"TensorRT engine {str(path)!r} does not end with {SUFFIX!r}")
        self._setup(path, read_sidecar(path), config=config, pretrained_cfg=pretrained_cfg)
        self.device = _cuda_device(device)
        with torch.cuda.device(self.device):
            self._logger = logger(trt)  # kept: TensorRT holds on to it
            self._runtime = trt.Runtime(self._logger)
            self.engine: Any = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ValueError(
                    f"TensorRT {trt.__version__} cannot load {str(path)!r}: an engine runs only with the TensorRT "
                    "version and on the GPU model that built it; build it again on this machine"
                )
            self.context: Any = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if (inputs, outputs) != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ValueError(
                f"{str(path)!r} has inputs {inputs} and outputs {outputs}; a deeplabv3p engine has "
                f"[{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
            )
        in_shape = tuple(self.engine.get_tensor_shape(INPUT_NAME))
        self._check_shapes(in_shape, tuple(self.engine.get_tensor_shape(OUTPUT_NAME)))
        # (min, opt, max) input shapes of a dynamic engine's profile; None for a fixed-shape engine
        self.profile: tuple[tuple[int, ...], ...] | None = None
        if any(d < 0 for d in in_shape):
            self.profile = tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
        self.max_batch = int(self.profile[2][0] if self.profile is not None and in_shape[0] < 0 else in_shape[0])

    def configure(self, options: PredictOptions) -> TensorRTSegmenter:
        """Refuse PyTorch-only options and devices other than CUDA: the engine runs in the precision it was built
        with, on the GPU."""
        if options.device is not None and torch.device(options.device).type != "cuda":
            raise ValueError(f"device={options.device!r}: a TensorRT engine runs on a CUDA GPU (device='cuda')")
        super().configure(options.replace(device=None))
        if options.device is not None:
            self.device = _cuda_device(options.device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = x.detach().to(self.device, torch.float32).contiguous()
        outs = [self._run(x[i : i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        logits = outs[0] if len(outs) == 1 else torch.cat(outs)
        self._check_shapes(tuple(x.shape), tuple(logits.shape), declared=False)
        return logits

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
                low, _, high = self.profile or (tuple(self.engine.get_tensor_shape(INPUT_NAME)),) * 3
                raise ValueError(
                    f"{str(self.path)!r} takes inputs from {list(low)} to {list(high)} (N, C, H, W) and was given "
                    f"{list(x.shape)}: export it again with min_size/max_size/max_batch that cover it, or predict "
                    "with mode='slide' and a crop_size inside that range"
                )
            out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), device=self.device)
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
                raise RuntimeError(f"TensorRT failed to run {str(self.path)!r} on an input of shape {list(x.shape)}")
        return out

    def run(self, x: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(x)).cpu().numpy()


def _cuda_device(device: str | torch.device | None) -> torch.device:
    found = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
    if found.type != "cuda":
        raise ValueError(f"device={str(device)!r}: a TensorRT engine runs on a CUDA GPU (device='cuda')")
    return torch.device("cuda", found.index if found.index is not None else torch.cuda.current_device())


def prove(path: str | os.PathLike, model: nn.Module, *, input_size: tuple[int, int], dynamic: bool) -> list[str]:
    """The export's check of an engine (this format's inspector): run it on the GPU against eager fp32 PyTorch at
    the export size (and a second size when dynamic); the report's lines, or ExportCheckError below `BOUNDS`."""
    segmenter = TensorRTSegmenter(path)
    config = segmenter.config
    agreements = [
        compare(model, segmenter, synthetic_inputs(config.in_chans, size))
        for size in check_sizes(input_size, dynamic, config.output_stride)
    ]
    lines = [a.describe("tensorrt") for a in agreements]
    if any(not a.within(BOUNDS) for a in agreements):
        raise ExportCheckError(
            f"the tensorrt engine does not segment as the PyTorch model does (required: {BOUNDS.describe()}):\n  "
            + "\n  ".join(lines)
        )
    return [*lines, f"within the bound of reduced-precision engines ({BOUNDS.describe()})"]
