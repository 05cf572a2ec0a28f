"""One training step: ``accum_steps`` micro-batches through the network (under autocast, DDP-synchronised on the
last), the loss (plus the auxiliary head's), backward through the grad scaler, gradient clipping, then the
optimiser, scaler and schedule steps."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed
from ..inference.pipeline import normalize
from ..inference.precision import describe_device, emulated, native_dtype
from .components import Components
from .config import AmpMode, TrainConfig
from .samples import check_labels, weights_cfg

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus

_AMP_DTYPES: dict[AmpMode, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
logger = logging.getLogger("deeplabv3p")


def resolve_amp(amp: AmpMode | None, device: torch.device) -> AmpMode | None:
    """The mixed precision a run on `device` trains in, by predict's rule (`deeplabv3p.inference.precision`):
    ``"auto"`` becomes what the device runs natively (None: full precision), logged; an explicit precision the
    device only emulates is refused, with its measured cost."""
    if amp == "auto":
        native = native_dtype(device)
        chosen = next((name for name, dtype in _AMP_DTYPES.items() if dtype == native), None)
        logger.info("amp='auto' on %s: %s", describe_device(device), chosen or "full precision (float32)")
        return chosen
    if amp is not None and (reason := emulated(_AMP_DTYPES[amp], device)) is not None:
        raise ValueError(f"amp={amp!r} on {device}: {reason}; use amp='auto' (--amp auto) or full precision")
    return amp


class TrainStep:
    """The model's training step for one run: wraps it in DistributedDataParallel under torchrun (call after the
    checkpoint is restored, so that rank 0's weights are the ones broadcast)."""

    def __init__(self, model: DeepLabV3Plus, parts: Components, cfg: TrainConfig, ctx: distributed.DistContext) -> None:
        self.model, self.parts, self.cfg, self.ctx = model, parts, cfg, ctx
        self.net: nn.Module = model
        if ctx.distributed:
            self.net = DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=getattr(model, "aux_head", None) is not None and not parts.use_aux,
            )
        self.amp = cfg.amp

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=_AMP_DTYPES[self.amp])  # resolved: never "auto"

    def __call__(self, batches: Iterator[tuple[torch.Tensor, ...]], iteration: int, running: torch.Tensor) -> None:
        """Take step ``iteration + 1`` on the next ``accum_steps`` batches, adding its loss to `running` (one
        micro-batch at a time, so that the logged sums are those of every earlier version of the loop)."""
        cfg, ctx, parts = self.cfg, self.ctx, self.parts
        mean, std = parts.statistics.mean, parts.statistics.std
        parts.optimizer.zero_grad(set_to_none=True)
        for micro in range(cfg.accum_steps):
            images, masks, sizes = next(batches)
            check_labels(
                masks, self.model.num_classes, parts.ignore_index, f"a training batch at iteration {iteration + 1}"
            )
            x = normalize(images.to(ctx.device, non_blocking=True), mean, std, sizes)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = masks.to(ctx.device, non_blocking=True)
            last = micro == cfg.accum_steps - 1
            net = self.net
            sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    logits, aux = net(x, return_aux=True)
                loss = parts.loss(logits, y)
                if parts.use_aux and aux is not None:
                    loss = loss + cfg.loss.aux_weight * parts.aux_loss(aux, y)
                parts.scaler.scale(loss / cfg.accum_steps).backward()
            running += loss.detach() / cfg.accum_steps
        if cfg.optim.clip_grad_norm is not None:
            parts.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        weights = weights_cfg(self.model)
        if weights.metrics:  # the weights changed: the last validation no longer describes them
            self.model.pretrained_cfg = weights.replace(metrics={})
