"""What the predict pipeline runs the network with: a `Backend` maps a normalized batch to logits.

The pipeline (resize, normalize, whole / slide / TTA, final resize, argmax) is written once against this interface;
`TorchBackend` runs a `DeepLabV3Plus` (autocast, channels_last, its device), and
`deeplabv3p.deploy` runs exported files (ONNX, OpenVINO, ...) with their runtimes (`DeployedBackend`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from ..models.config import ModelConfig
from ..models.digest import state_digest
from ..pretrained.config import PretrainedCfg
from .options import PredictOptions
from .precision import resolve_dtype

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork


class Backend:
    """A network the pipeline can run: ``backend(x)`` maps a normalized float32 batch ``(N, C, H, W)`` on
    `device` to float32 logits ``(N, num_classes, H, W)``.

    Subclasses set `config` (the architecture: classes, input channels, align_corners), `pretrained_cfg` (the
    test-time settings) and `device`, implement `__call__`, and may override `configure` (check and apply the
    options of a predict call) and `session` (the context every forward of a predict call runs in).
    """

    name = "backend"
    config: ModelConfig
    pretrained_cfg: PretrainedCfg | None
    device: torch.device

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def configure(self, options: PredictOptions) -> Backend:
        """The backend to run a predict call with `options` (self, or a configured copy); raises on options the
        backend cannot honour."""
        return self

    def session(self) -> contextlib.AbstractContextManager[None]:
        """The context of every forward and post-processing step of a predict call (no autograd by default)."""
        return torch.inference_mode()

    def identity(self) -> str | None:
        """What tells this backend's outputs from another's across processes: the architecture, the weights'
        metadata and content, and the precision they run in. A resumed raster prediction continues only under
        the same identity; None (this default: a backend that cannot tell) never resumes."""
        return None


class TorchBackend(Backend):
    """A `DeepLabV3Plus` on its device, optionally under autocast and in channels_last memory format."""

    name = "pytorch"

    def __init__(
        self, model: DeepLabV3PlusNetwork, dtype: torch.dtype | None = None, channels_last: bool = False
    ) -> None:
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last

    @property
    def config(self) -> ModelConfig:  # type: ignore[override]
        return self.model.config

    @property
    def pretrained_cfg(self) -> PretrainedCfg | None:  # type: ignore[override]
        return self.model.pretrained_cfg

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return next(self.model.parameters()).device

    def configure(self, options: PredictOptions) -> TorchBackend:
        """Move the model to ``options.device`` and to channels_last (in place) when asked; resolve the dtype."""
        if options.device is not None:
            from ..distributed import local_rank, resolve_device

            self.model.to(resolve_device(options.device, local_rank()))
        if options.channels_last:
            self.model.to(memory_format=torch.channels_last)
        dtype = resolve_dtype(options.dtype, self.device)
        return TorchBackend(self.model, dtype, options.channels_last)

    def identity(self) -> str:
        return f"{self.config!r} {self.pretrained_cfg!r} {state_digest(self.model)} {self.dtype} {self.device.type}"

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Eval mode and ``torch.inference_mode`` for the block; the model's training mode is restored after. A model
        already in eval mode is left as it is (switching walks every module: 1 ms a call on a ResNet-18)."""
        was_training = self.model.training
        switch = any(m.training for m in self.model.modules())
        if switch:
            self.model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if switch:
                self.model.train(was_training)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return self.model(x).float()
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.model(x).float()


def as_backend(model: DeepLabV3PlusNetwork | Backend) -> Backend:
    """What a predict call runs: a `Backend` as it is, a `DeepLabV3Plus` as a `TorchBackend` (its own
    ``inference_dtype`` included); else a TypeError naming what was given."""
    if isinstance(model, Backend):
        return model
    if not (hasattr(model, "config") and hasattr(model, "parameters")):
        raise TypeError(
            "model must be a deeplabv3p DeepLabV3Plus or an inference Backend (e.g. deeplabv3p.deploy.load(path)), "
            f"got {type(model).__name__}"
        )
    return TorchBackend(model)
