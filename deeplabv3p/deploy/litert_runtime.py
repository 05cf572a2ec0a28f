"""`LiteRTSegmenter`: an exported ``.tflite`` file as a predict backend, run by the LiteRT interpreter (XNNPACK).

    LiteRTSegmenter("model.tflite").predict("street.png")

Needs ai-edge-litert (``pip install 'deeplabv3p[litert]'``). The file holds one fixed input size; a batch is run
image by image.
"""

from __future__ import annotations

import os

import numpy as np

from ..fields import check_file
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg
from .backend import DeployedBackend
from .metadata import read_sidecar
from .packages import require


class LiteRTSegmenter(DeployedBackend):
    """A LiteRT DeepLabV3+ run on the CPU.

    Args:
        path: a ``.tflite`` file from ``deeplabv3p.deploy.export(..., format="litert", dynamic=False)``.
        threads: the interpreter's threads (default: torch's thread count).
        config, pretrained_cfg: for a file without the ``.tflite.json`` sidecar; they replace the sidecar's.
    """

    name = "litert"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        config: ModelConfig | None = None,
        pretrained_cfg: PretrainedCfg | None = None,
    ) -> None:
        interpreter_module = require("ai_edge_litert.interpreter", "litert", "running a LiteRT export")
        path = check_file("LiteRT file", path)
        self._setup(path, read_sidecar(path), config=config, pretrained_cfg=pretrained_cfg, threads=threads)
        try:
            interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=self.threads)
        except Exception as e:  # the interpreter raises ValueError/RuntimeError with flatbuffer details
            raise ValueError(f"LiteRT cannot load {str(path)!r}: {e}") from e
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{str(path)!r} has {len(inputs)} inputs and {len(outputs)} outputs; a deeplabv3p export has one "
                "image batch in and one logits tensor out"
            )
        self._interpreter = interpreter
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        in_shape = [int(d) for d in inputs[0]["shape_signature"]]
        self._check_shapes(in_shape, [int(d) for d in outputs[0]["shape_signature"]])
        interpreter.allocate_tensors()

    def run(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for i in range(x.shape[0]):
            self._interpreter.set_tensor(self._input, x[i : i + 1])
            self._interpreter.invoke()
            outputs.append(self._interpreter.get_tensor(self._output))
        return np.concatenate(outputs)
