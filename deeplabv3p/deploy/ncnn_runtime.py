"""`NcnnSegmenter`: an exported ``.ncnn.param`` (with its ``.ncnn.bin``) as a predict backend, run by ncnn.

    NcnnSegmenter("model.ncnn.param").predict("street.png")

segments as ``model.predict("street.png")`` does: the test-time settings come from the sidecar
``model.ncnn.param.json`` written by ``deeplabv3p.deploy.export``. Needs ncnn (``pip install 'deeplabv3p[ncnn]'``).

Runtime options: Winograd convolution and packed layouts on (ncnn's fast CPU paths; Winograd's rounding stays far
inside the fp32 bound), fp16/bf16 storage and arithmetic off: ncnn enables fp16 storage on CPUs that have it,
which moves logits by ~1e-3 of their scale and would break the documented fp32 bound (labels >= 99.9% equal,
logits within 1e-3).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..fields import check_file
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg
from .backend import DeployedBackend
from .metadata import read_sidecar
from .ncnn_param import SUFFIX, bin_path, declared_input
from .packages import require

# ncnn's reduced-precision switches, all off so that the file meets the fp32 bound
REDUCED_PRECISION = (
    "use_fp16_storage",
    "use_fp16_packed",
    "use_fp16_arithmetic",
    "use_bf16_storage",
    "use_bf16_packed",
)


class NcnnSegmenter(DeployedBackend):
    """An ncnn DeepLabV3+ run on the CPU, one image of the batch at a time.

    Args:
        path: a ``.ncnn.param`` file from ``deeplabv3p.deploy.export`` (its ``.ncnn.bin`` beside it).
        threads: ncnn's threads (default: torch's thread count, the same budget as PyTorch).
        winograd: Winograd convolution for 3x3 kernels (default on; off trades speed for the last bits of
            agreement with PyTorch).
        config, pretrained_cfg: the model's `ModelConfig` and `PretrainedCfg`, for files without the metadata
            sidecar (converted by other tools); they replace the file's when given.
    """

    name = "ncnn"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        winograd: bool = True,
        config: ModelConfig | None = None,
        pretrained_cfg: PretrainedCfg | None = None,
    ) -> None:
        ncnn = require("ncnn", "ncnn", "running an ncnn export")
        path = check_file("ncnn param file", path)
        if not path.name.endswith(SUFFIX):
            raise ValueError(
                f"ncnn param file {str(path)!r} does not end with {SUFFIX!r}: pass the NAME{SUFFIX} file that "
                "deeplabv3p export wrote (its weights are NAME.ncnn.bin beside it)"
            )
        weights = check_file("ncnn weights file", bin_path(path))
        declared = declared_input(path)
        self._setup(path, read_sidecar(path), config=config, pretrained_cfg=pretrained_cfg, threads=threads)
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = self.threads
        opt.use_winograd_convolution = bool(winograd)
        opt.use_packing_layout = True
        for flag in REDUCED_PRECISION:
            setattr(opt, flag, False)
        opt.use_vulkan_compute = False
        if net.load_param(str(path)) != 0 or net.load_model(str(weights)) != 0:
            raise ValueError(
                f"ncnn cannot load {str(path)!r} with {str(weights)!r} (an unknown layer, or weights that do not "
                "match the graph): export the model again with deeplabv3p export --format ncnn"
            )
        inputs, outputs = list(net.input_names()), list(net.output_names())
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{str(path)!r} has inputs {inputs} and outputs {outputs}; a deeplabv3p export has one of each"
            )
        self.net: Any = net
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._ncnn = ncnn
        self._check_shapes(declared, (-1, -1, -1, -1))  # ncnn files do not declare output shapes: checked per call

    def run(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for image in x:  # ncnn's Mat holds one (C, H, W) image
            array = np.ascontiguousarray(image, dtype=np.float32)
            mat = self._ncnn.Mat(array)  # wraps `array`'s memory: `array` must outlive the extraction
            with self.net.create_extractor() as extractor:
                extractor.input(self.input_name, mat)
                status, out = extractor.extract(self.output_name)
                if status != 0:
                    raise RuntimeError(f"ncnn failed on an input of shape {image.shape} (status {status})")
                result = np.array(out, dtype=np.float32)  # a copy, before the extractor frees the blob
            if result.ndim == 2:  # one class plane comes back as a 2-D Mat
                result = result[None]
            outputs.append(result)
        return np.stack(outputs)
