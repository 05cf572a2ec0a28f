"""Fine-tuning: `fit` (single process, or DDP under torchrun), the loop that runs the parts of a run.

`fit` follows mmseg's recipe unless told otherwise: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), PolyLR
(power 0.9, down to 1e-4) stepped every iteration, cross-entropy ignoring 255 plus the auxiliary head's loss at
weight 0.4, and mmseg's augmentation (random resize 0.5-2x, crop with cat_max_ratio 0.75, flip, photometric
distortion). It validates and checkpoints every ``iters // 10`` iterations, keeps the best model (by mIoU) as a
model folder in ``OUT/best`` and resumes exactly from ``OUT/checkpoints`` with ``resume=True``.

Under ``torchrun`` every process runs the same `fit` call: the default process group is set up from the
environment (nccl on GPU, gloo on CPU), the model is wrapped in DistributedDataParallel (with SyncBatchNorm on GPU),
each rank reads its share of the data, validation is sharded and summed, and rank 0 alone logs and writes files.

The parts: `components` builds what a run trains with, `step` takes one optimiser step, `hooks` are the periodic
jobs (divergence check, log, validation, checkpoints); `evaluation` holds `evaluate`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..atomic import atomic_write_text
from ..fields import flat_fields
from .checkpoint import find_checkpoint
from .components import build_components, release, sample_stream
from .config import TrainConfig
from .hooks import Checkpointing, DivergenceCheck, Hook, RunLog, RunState, TrainLog, Validation, due
from .step import TrainStep, resolve_amp

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus

__all__ = ["FitResult", "TrainConfig", "fit"]

TRAIN_CONFIG_FILE = "train_config.json"
LOG_FILE = "log.jsonl"


@dataclass
class FitResult:
    """What `fit` produced: the final and best validation metrics, where the models are, the validation history.

    ``metrics`` is the full result of the last validation (per-class values included), ``best_metrics`` the
    summary (aAcc, mIoU, mAcc) of the best one, whose model is in ``best_path``.
    """

    out: Path
    iterations: int
    metrics: dict[str, Any] | None = None
    best_metrics: dict[str, Any] | None = None
    best_iteration: int | None = None
    best_path: Path | None = None
    last_checkpoint: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class _Run:
    """One call of `fit`: its parts, optional resume, and the loop that steps and calls the hooks."""

    def __init__(
        self, model: DeepLabV3Plus, train: Any, val: Any, cfg: TrainConfig, out: Path, ctx: distributed.DistContext,
        progress: bool,
    ) -> None:  # fmt: skip
        self.model, self.train_set, self.val_set, self.cfg, self.out, self.ctx = model, train, val, cfg, out, ctx
        self.progress = progress and ctx.is_main
        self.log = RunLog(out / LOG_FILE if ctx.is_main else None, self.progress)
        self.parts = build_components(model, train, val, cfg, ctx, self.progress)
        self.state = RunState(running=torch.zeros((), device=ctx.device))
        self.checkpointing = Checkpointing(model, self.parts, out, self.log, cfg, ctx)

    def resume(self, resume: Literal[True] | str | Path) -> None:
        self.checkpointing.restore(resume, self.state)

    def _hooks(self, bar: tqdm) -> tuple[DivergenceCheck, list[Hook]]:
        """The periodic jobs, in the order they run at an iteration where several are due."""
        cfg, ctx = self.cfg, self.ctx
        divergence = DivergenceCheck(cfg, self.model.num_classes)
        hooks: list[Hook] = [divergence, TrainLog(self.log, bar, self.parts, cfg, ctx)]
        if self.val_set is not None:
            hooks.append(Validation(self.model, self.val_set, self.out, self.log, cfg, ctx, self.progress))
        hooks.append(self.checkpointing)
        return divergence, hooks

    def run(self) -> FitResult:
        cfg, ctx, state = self.cfg, self.ctx, self.state
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            record = {"train": cfg.to_dict(), "world_size": ctx.world_size, "model": self.model.config.to_dict()}
            atomic_write_text(self.out / TRAIN_CONFIG_FILE, json.dumps(record, indent=2) + "\n")
        step = TrainStep(self.model, self.parts, cfg, ctx)
        batches = sample_stream(self.train_set, self.parts, cfg, ctx, state.iteration)
        bar = tqdm(
            total=cfg.iters, initial=state.iteration, desc="train", disable=not self.progress, dynamic_ncols=True
        )
        divergence, hooks = self._hooks(bar)
        state.tick = time.perf_counter()
        step.net.train()
        while state.iteration < cfg.iters:
            step(batches, state.iteration, state.running)
            divergence.observe(state)
            state.iteration += 1
            state.count += 1
            bar.update(1)
            for hook in hooks:
                if due(hook, state.iteration, cfg.iters):
                    hook(state)
        bar.close()
        del batches  # stops the loader's worker processes
        return self._finish()

    def _finish(self) -> FitResult:
        state = self.state
        release(self.model, self.parts)
        best_path = self.out / "best" if state.best is not None else None
        if state.best is not None and self.progress:
            self.log.say(f"best mIoU {state.best['mIoU']:.2f} at iteration {state.best['iteration']} -> {best_path}")
        return FitResult(
            out=self.out,
            iterations=state.iteration,
            metrics=state.last_metrics,
            best_metrics=state.best,
            best_iteration=state.best["iteration"] if state.best else None,
            best_path=best_path,
            last_checkpoint=state.last_checkpoint,
            history=state.history,
        )


def fit(
    model: DeepLabV3Plus,
    train: Any,
    val: Any = None,
    *,
    out: str | Path = "runs/train",
    config: TrainConfig | None = None,
    resume: bool | str | Path = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    **overrides: Any,
) -> FitResult:
    """Fine-tune `model` on `train` (in place), validating on `val`; see the module docstring for the recipe.

    Args:
        model: a deeplabv3p model whose ``num_classes`` matches the training set.
        train: a `SegmentationDataset` (with the model's ``in_chans``), or any dataset of ``(image, integer
            mask)`` pairs, the image on the 0..255 scale with ``in_chans`` bands (`deeplabv3p.train.samples`:
            uint8, uint16 or float in [0, 255]). Its samples are augmented with mmseg's pipeline unless it has its
            own ``transforms``.
        val: evaluation dataset (through ``model.predict``), or None for no validation.
        out: run folder: ``log.jsonl``, ``train_config.json``, ``checkpoints/`` and ``best/``.
        config: a `TrainConfig`; keyword `overrides` (any TrainConfig field, e.g. ``iters=2000``) apply on top.
        resume: True continues from the newest checkpoint in `out` (starting fresh if there is none), a path
            continues from that checkpoint folder; the schedule, optimizer, RNG and sample order carry on exactly.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when available (this process's GPU under torchrun).
        progress: show a progress bar and validation tables (rank 0 only).

    Returns a `FitResult`. Afterwards the model holds the last iteration's weights, in eval mode, with
    ``pretrained_cfg`` describing the training set; ``OUT/best`` holds the best validated one.
    """
    if not hasattr(model, "config") or not hasattr(model, "pretrained_cfg"):
        raise TypeError(f"model must be a deeplabv3p model (from create_model), got {type(model).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    accepted = {*flat_fields(TrainConfig), *TrainConfig.__dataclass_fields__}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise TypeError(f"fit() got unknown argument(s) {unknown}; accepted: {sorted(accepted)}")
    cfg = (config or TrainConfig()).replace(**overrides)
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(
            f"out {str(out)!r} is a file; fit writes a run folder there (train_config.json, log.jsonl, "
            "checkpoints/, best/): pass a folder"
        )
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if val is not None and len(val) == 0:
        raise ValueError("the validation set is empty; pass val=None to train without validation")
    ctx = distributed.setup(device)
    try:
        cfg = cfg.replace(amp=resolve_amp(cfg.amp, ctx.device))  # the run records the precision it trains in
        run = _Run(model, train, val, cfg, Path(out), ctx, progress)
        if resume:
            run.resume(resume)
        elif (previous := find_checkpoint(Path(out))) is not None:
            raise ValueError(
                f"{str(out)!r} already holds a run (checkpoint {previous.name}); pass resume=True (--resume) to "
                "continue it, or another out folder for a new run"
            )
        return run.run()
    finally:
        distributed.teardown(ctx)
