"""`ExecuTorchSegmenter`: an exported ``.pte`` program as a predict backend, run by the ExecuTorch runtime (XNNPACK).

    ExecuTorchSegmenter("model.pte").predict("street.png")

Needs executorch (``pip install 'deeplabv3p[executorch]'``). The program runs one image at a time (a batch is run
image by image); its height and width lie between the bounds stored at export and the size its memory was planned
for, and a size outside them is refused with the fix rather than the runtime's error.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..fields import check_file
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg
from ..spelling import arg
from .backend import DeployedBackend
from .executorch_export import MIN_HEIGHT, MIN_WIDTH
from .metadata import read_sidecar
from .packages import require

_pool_threads: int | None = None  # what the first segmenter of the process set ExecuTorch's thread pool to


def _thread_pool(portable_lib: Any, threads: int, explicit: bool) -> int:
    """Size ExecuTorch's process-wide CPU thread pool once, before the first program is loaded: XNNPACK keeps the
    pool of a loaded program, so resizing it later would crash the programs already loaded. Returns its size."""
    global _pool_threads
    if _pool_threads is None:
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
        _pool_threads = threads
    elif explicit and threads != _pool_threads:
        raise ValueError(
            f"threads={threads}: ExecuTorch's thread pool is shared by the whole process and was sized to "
            f"{_pool_threads} threads by the first program loaded (resizing it under a loaded program is unsafe); "
            f"pass threads={_pool_threads} or leave threads unset"
        )
    return _pool_threads


class ExecuTorchSegmenter(DeployedBackend):
    """An ExecuTorch DeepLabV3+ program run on the CPU.

    Args:
        path: a ``.pte`` file from ``deeplabv3p.deploy.export(..., format="executorch")``.
        threads: threads of ExecuTorch's CPU thread pool (default: torch's thread count). The pool is shared by
            every ExecuTorch program of the process: the first segmenter sizes it, and a later one asking for
            another size is refused.
        config, pretrained_cfg: for a program without the ``.pte.json`` sidecar; they replace the sidecar's.
    """

    name = "executorch"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        config: ModelConfig | None = None,
        pretrained_cfg: PretrainedCfg | None = None,
    ) -> None:
        require("executorch", "executorch", "running an ExecuTorch export")
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        path = check_file("ExecuTorch program", path)
        self._setup(path, read_sidecar(path), config=config, pretrained_cfg=pretrained_cfg, threads=threads)
        self.threads = _thread_pool(portable_lib, threads or self.threads, explicit=threads is not None)
        try:
            program = Runtime.get().load_program(path)
            self._program = program  # the method runs out of the program's memory: keep it alive
            self._method = program.load_method("forward")
        except Exception as e:  # the runtime raises RuntimeError/ValueError with its own codes for foreign files
            raise ValueError(f"ExecuTorch cannot load {str(path)!r} as a program with a forward method: {e}") from e
        meta = self._method.metadata
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise ValueError(
                f"{str(path)!r} takes {meta.num_inputs()} inputs and gives {meta.num_outputs()} outputs; a "
                "deeplabv3p export takes one image batch and gives one logits tensor"
            )
        self.max_size = self._planned_size(meta.input_tensor_meta(0).sizes())
        low = self._constant(program, MIN_HEIGHT), self._constant(program, MIN_WIDTH)
        self.min_size = (low[0] or self.max_size[0], low[1] or self.max_size[1])
        fixed = self.min_size == self.max_size
        in_shape = list(meta.input_tensor_meta(0).sizes())
        out_shape = list(meta.output_tensor_meta(0).sizes())
        if not fixed:
            in_shape[2:] = out_shape[2:] = [None, None]
        self._check_shapes(in_shape, out_shape)

    def _planned_size(self, sizes: Any) -> tuple[int, int]:
        sizes = tuple(sizes)
        if len(sizes) != 4:
            raise ValueError(f"{str(self.path)!r} takes an input of shape {list(sizes)}; a segmentation network's is "
                             "(N, C, H, W): export the model with deeplabv3p.deploy.export")  # fmt: skip
        return int(sizes[2]), int(sizes[3])

    @staticmethod
    def _constant(program: Any, name: str) -> int | None:
        if name not in program.method_names:
            return None
        return int(program.load_method(name).execute([])[0])

    def run(self, x: np.ndarray) -> np.ndarray:
        height, width = x.shape[2], x.shape[3]
        (lh, lw), (hh, hw) = self.min_size, self.max_size
        if not (lh <= height <= hh and lw <= width <= hw):
            raise ValueError(
                f"{str(self.path)!r} takes inputs from {lh}x{lw} to {hh}x{hw} (HxW) and was given {height}x{width}: "
                "export it with a larger --size (or max_size=), or predict with "
                f"{arg('mode', 'slide')} {arg('crop_size', (hh, hw))}"
            )
        outputs = [self._method.execute([torch.from_numpy(x[i : i + 1])])[0] for i in range(x.shape[0])]
        return torch.cat(outputs).numpy()
