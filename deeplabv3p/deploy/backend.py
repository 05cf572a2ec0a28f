"""`DeployedBackend`: an exported file, run by its runtime, as a predict backend.

Each runtime's loader (``OnnxSegmenter``, the OpenVINO, ExecuTorch, LiteRT and ncnn segmenters) subclasses it and
implements `run` (a float32 NCHW array in, logits out); everything else is here once: the config and test-time
settings from the file's metadata, the checks of input bands, output classes and fixed sizes against them (a clear
error instead of the runtime's), the refusal of PyTorch-only predict options, and ``.predict`` through the same
whole / slide / TTA pipeline as the PyTorch model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fields import check_int
from ..inference.backend import Backend
from ..inference.options import PredictOptions
from ..inference.result import SegmentationResult
from ..models.config import ModelConfig
from ..pretrained.config import PretrainedCfg, pretrained_cfg_for
from .metadata import from_json


class DeployedBackend(Backend):
    """Base of the runtimes' segmenters. Subclasses call `_setup` in ``__init__`` and implement `run`."""

    name = "deployed"
    path: Path
    static_size: tuple[int, int] | None = None

    def _setup(
        self,
        path: str | os.PathLike,
        stored: str | None,
        *,
        config: ModelConfig | None,
        pretrained_cfg: PretrainedCfg | None,
        threads: int | None = None,
    ) -> None:
        """Set `path`, `config`, `pretrained_cfg`, `device` and `threads` from the file's stored metadata (`stored`,
        None when absent) or the given records, which take precedence."""
        self.path = Path(path)
        if threads is not None:
            check_int("threads", threads, 1)
        self.threads = threads or torch.get_num_threads()
        if stored is not None:
            file_config, file_cfg = from_json(stored, f"{self.path} metadata")
        elif config is None:
            file_config, file_cfg = from_json(None, repr(str(self.path)))  # raises, saying what to pass
        else:
            file_config, file_cfg = config, pretrained_cfg_for(config)  # the bare architecture's settings
        self.config = config or file_config
        self.pretrained_cfg = pretrained_cfg or file_cfg
        self.device = torch.device("cpu")

    def _check_shapes(self, input_shape: Sequence[Any], output_shape: Sequence[Any], declared: bool = True) -> None:
        """The input bands and output class planes against the config where the shapes fix them; `declared`: the
        shapes the file declares (a dynamic dimension is None, a name or -1; a fixed height and width set
        `static_size`), else those of one call."""
        for what, shape, expected, field in (
            ("input", input_shape, self.config.in_chans, "in_chans"),
            ("output", output_shape, self.config.num_classes, "num_classes"),
        ):
            if len(shape) != 4:
                raise ValueError(
                    f"{str(self.path)!r} has an {what} of shape {list(shape)}; a segmentation network's {what} is "
                    "(N, C, H, W): export the model with deeplabv3p.deploy.export"
                )
            found = shape[1]
            if isinstance(found, int) and found > 0 and found != expected:
                raise ValueError(
                    f"{str(self.path)!r} has an {what} of {found} channels but its config says {field}={expected}: "
                    f"pass config=ModelConfig(..., {field}={found}) for this file, or export the model again"
                )
        height, width = input_shape[2], input_shape[3]
        if declared and isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            self.static_size = (height, width)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, num_classes, H, W)`` float32 of a contiguous float32 input ``(N, C, H, W)``."""
        raise NotImplementedError

    def configure(self, options: PredictOptions) -> DeployedBackend:
        """Refuse the options that apply to PyTorch only: the file runs in the precision it holds, on the CPU."""
        if options.dtype not in (None, "auto", torch.float32):
            raise ValueError(
                f"dtype={options.dtype} applies to the PyTorch backend; an exported file runs in the precision it "
                "was exported in (for INT8: deeplabv3p export --int8)"
            )
        if options.channels_last:
            raise ValueError(f"channels_last applies to the PyTorch backend; {self.name} chooses its own layouts")
        if options.device not in (None, "cpu"):
            raise ValueError(f"device={options.device!r}: {type(self).__name__} runs on the CPU")
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits = np.asarray(self.run(array), dtype=np.float32)
        self._check_shapes(array.shape, logits.shape, declared=False)
        return torch.from_numpy(logits)

    def _check_input(self, x: torch.Tensor) -> None:
        """A clear error for an input the file cannot take (bands, smaller than the output stride, a fixed size)."""
        m = self.config.output_stride
        if x.dim() != 4 or x.shape[1] != self.config.in_chans or min(x.shape[2:]) < m:
            raise ValueError(
                f"input of shape {tuple(x.shape)}: the network takes (N, {self.config.in_chans}, H, W) with H and W "
                f"at least {m}"
            )
        if self.static_size is not None and tuple(x.shape[2:]) != self.static_size:
            h, w = self.static_size
            raise ValueError(
                f"{str(self.path)!r} was exported for {h}x{w} (HxW) inputs only and was given "
                f"{x.shape[2]}x{x.shape[3]}: export it with dynamic shapes (no --static), or predict with "
                f"mode='slide', crop_size=({h}, {w}) so that every window has that size"
            )

    def predict(
        self, inputs: Any, options: PredictOptions | None = None, **overrides: Any
    ) -> SegmentationResult | list[SegmentationResult]:
        """`deeplabv3p.predict` with this file as the network."""
        from ..inference.pipeline import predict

        return predict(self, inputs, options, **overrides)

    def predict_iter(
        self, inputs: Any, options: PredictOptions | None = None, *, shard: bool = False, **overrides: Any
    ) -> Iterator[SegmentationResult]:
        """`deeplabv3p.predict_iter` with this file as the network."""
        from ..inference.pipeline import predict_iter

        return predict_iter(self, inputs, options, shard=shard, **overrides)

    def identity(self) -> str:
        """The metadata, the file as the file system knows it (an export rewritten has a new time stamp), and how
        the runtime runs it (`run_settings`)."""
        stat = self.path.stat()
        file = f"{self.path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
        return f"{self.config!r} {self.pretrained_cfg!r} {file} {self.run_settings()}"

    def run_settings(self) -> str:
        """What else than the file changes the numbers (a runtime's precision, its execution providers); none here."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.config.architecture}, {self.num_classes} classes)"
