"""The periodic jobs of a `fit` run, each a small hook called by the loop every ``interval`` iterations and at the
last one: the divergence check and the training log (``log_interval``), validation (``val_interval``) and
checkpoints (``checkpoint_interval``, restored by `Checkpointing.restore`). They share the run's `RunState`."""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..fields import flat_values
from .checkpoint import find_checkpoint, read_training_state, write_best, write_checkpoint
from .components import Components, schedule
from .config import RUNTIME_FIELDS, TrainConfig
from .evaluation import evaluate
from .metrics import format_table
from .samples import weights_cfg

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus

# A logged loss this many times the larger of the first iteration's loss and ln(num_classes) (a uniform guess) means
# the run has diverged: no healthy run climbs orders of magnitude above where it started.
DIVERGENCE_FACTOR = 100.0
SUMMARY = ("aAcc", "mIoU", "mAcc")


@dataclass
class RunState:
    """Where a run is: the iterations done, the validations so far and the best of them, the last checkpoint, and
    the loss summed since the last log entry (`running`, over `count` iterations since `tick`)."""

    running: torch.Tensor
    iteration: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    last_metrics: dict[str, Any] | None = None
    count: int = 0
    tick: float = field(default_factory=time.perf_counter)


class Hook(Protocol):
    """A periodic job: called when ``iteration % interval == 0`` and at the run's last iteration."""

    interval: int

    def __call__(self, state: RunState) -> None: ...


def due(hook: Hook, iteration: int, iters: int) -> bool:
    return iteration % hook.interval == 0 or iteration == iters


class RunLog:
    """Rank 0's record of the run: JSON lines in ``OUT/log.jsonl`` and, with progress on, lines above the bar."""

    def __init__(self, path: Path | None, echo: bool) -> None:
        self.path = path
        self.echo = echo

    def record(self, entry: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, default=lambda v: None) + "\n")

    def say(self, text: str) -> None:
        if self.echo:
            tqdm.write(text)


class DivergenceCheck:
    """Stops a run whose logged loss is not finite, or climbed `DIVERGENCE_FACTOR` times above where it started
    (the first finite loss of this process, or ln(num_classes) if larger)."""

    def __init__(self, cfg: TrainConfig, num_classes: int) -> None:
        self.interval = cfg.log_interval
        self.cfg, self.num_classes = cfg, num_classes
        self.reference: float | None = None

    def observe(self, state: RunState) -> None:
        """Called after every step: the first finite loss becomes the reference."""
        if self.reference is None and math.isfinite(first := float(state.running)):
            self.reference = max(first, math.log(max(self.num_classes, 2)))

    def __call__(self, state: RunState) -> None:
        cfg = self.cfg
        loss = float(state.running) / max(state.count, 1)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {loss} at iteration {state.iteration}: training diverged. Lower lr (now "
                f"{cfg.optim.lr}), or use amp='bf16' instead of 'fp16'"
            )
        if self.reference is not None and loss > DIVERGENCE_FACTOR * self.reference:
            raise FloatingPointError(
                f"the loss is {loss:.4g} at iteration {state.iteration}, over {DIVERGENCE_FACTOR:g} times where it "
                f"started ({self.reference:.4g}): training diverged. Lower lr (now {cfg.optim.lr}) or momentum "
                f"(now {cfg.optim.momentum})"
            )


def refuse_non_finite(state: RunState, model: DeepLabV3Plus, cfg: TrainConfig, what: str) -> None:
    """Before `what` is written: the loss summed since the last log entry (every step's, with no host sync per
    step) and the model's weights and buffers must be finite, so that no NaN model is ever saved."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(state.running).all(), *(torch.isfinite(t).all() for t in tensors)])
    if bool(finite.all()):
        return
    last = f"; the last checkpoint, {state.last_checkpoint}, holds finite weights" if state.last_checkpoint else ""
    raise FloatingPointError(
        f"the loss or the weights are not finite (NaN or inf) at iteration {state.iteration}: training diverged and "
        f"{what} was not written{last}. Lower lr (now {cfg.optim.lr}), or use amp='bf16' instead of 'fp16'"
    )


class TrainLog:
    """The mean loss, learning rate and speed since the last entry, in the log and on the bar; then a new count."""

    def __init__(
        self, log: RunLog, bar: tqdm, parts: Components, cfg: TrainConfig, ctx: distributed.DistContext
    ) -> None:
        self.interval = cfg.log_interval
        self.log, self.bar, self.parts, self.cfg, self.ctx = log, bar, parts, cfg, ctx

    def __call__(self, state: RunState) -> None:
        cfg, ctx = self.cfg, self.ctx
        loss = float(state.running) / max(state.count, 1)
        now = time.perf_counter()
        seconds = (now - state.tick) / max(state.count, 1)
        images = cfg.batch_size * cfg.accum_steps * ctx.world_size
        lr = self.parts.optimizer.param_groups[-1]["lr"]
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images / seconds:.1f}")
        entry = {
            "iter": state.iteration,
            "loss": loss,
            "lr": lr,
            "sec_per_iter": seconds,
            "img_per_sec": images / seconds,
        }
        if ctx.device.type == "cuda":
            entry["max_memory_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
        self.log.record(entry)
        state.running.zero_()
        state.count, state.tick = 0, now


class Validation:
    """Evaluate on the validation set; the model's pretrained_cfg records the metrics until the next step, and a
    new best (by mIoU) is written to ``OUT/best``."""

    def __init__(
        self, model: DeepLabV3Plus, val: Any, out: Path, log: RunLog, cfg: TrainConfig, ctx: distributed.DistContext,
        progress: bool,
    ) -> None:  # fmt: skip
        self.interval = cfg.resolved_val_interval
        self.model, self.val, self.out, self.log, self.ctx, self.progress = model, val, out, log, ctx, progress
        self.cfg = cfg

    def __call__(self, state: RunState) -> None:
        model = self.model
        refuse_non_finite(state, model, self.cfg, "the best model")
        distributed.broadcast_buffers(model)  # every rank evaluates the same model
        metrics = evaluate(model, self.val, progress=self.progress)
        state.last_metrics = metrics
        summary = {k: round(metrics[k], 2) for k in SUMMARY}
        model.pretrained_cfg = weights_cfg(model).replace(metrics=summary)
        state.history.append({"iter": state.iteration, **{k: metrics[k] for k in SUMMARY}})
        self.log.record({"iter": state.iteration, "val": metrics})
        self.log.say(f"validation at iteration {state.iteration}:\n{format_table(metrics)}")
        if not math.isnan(metrics["mIoU"]) and (state.best is None or metrics["mIoU"] > state.best["mIoU"]):
            state.best = {"iteration": state.iteration, **{k: metrics[k] for k in SUMMARY}}
            if self.ctx.is_main:
                write_best(self.out, model, {"iteration": state.iteration, **metrics})
            distributed.barrier()


class Checkpointing:
    """Writes ``OUT/checkpoints/iter_N`` (the model folder plus the optimiser, schedule, scaler, every rank's RNG
    states and the run's state), keeping the newest ``keep_checkpoints``; `restore` reads one back."""

    def __init__(
        self, model: DeepLabV3Plus, parts: Components, out: Path, log: RunLog, cfg: TrainConfig,
        ctx: distributed.DistContext,
    ) -> None:  # fmt: skip
        self.interval = cfg.resolved_checkpoint_interval
        self.model, self.parts, self.out, self.log, self.cfg, self.ctx = model, parts, out, log, cfg, ctx

    def __call__(self, state: RunState) -> None:
        parts, ctx = self.parts, self.ctx
        refuse_non_finite(state, self.model, self.cfg, "the checkpoint")
        rng = {"cpu": torch.get_rng_state()}
        if ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(ctx.device)
        rngs = distributed.all_gather_object(rng)
        if ctx.is_main:
            record = {
                "iteration": state.iteration,
                "optimizer": parts.optimizer.state_dict(),
                "scheduler": parts.scheduler.state_dict(),
                "scaler": parts.scaler.state_dict() if parts.scaler.is_enabled() else None,
                "rng": rngs,
                "best": state.best,
                "history": state.history,
                "config": self.cfg.to_dict(),
                "world_size": ctx.world_size,
            }
            state.last_checkpoint = write_checkpoint(
                self.out, state.iteration, self.model, record, self.cfg.keep_checkpoints
            )
            self.log.record({"iter": state.iteration, "checkpoint": str(state.last_checkpoint)})
        distributed.barrier()

    def restore(self, resume: Literal[True] | str | Path, state: RunState) -> None:
        """Continue from the newest checkpoint in ``OUT`` (`resume` True; none there: start afresh) or from the
        checkpoint folder `resume`: weights, optimiser, schedule position, scaler, RNG states, run state."""
        parts, cfg, ctx = self.parts, self.cfg, self.ctx
        folder = find_checkpoint(self.out if resume is True else Path(resume))
        if folder is None:
            if resume is not True:
                raise FileNotFoundError(f"no checkpoint to resume from at {str(resume)!r}")
            self.log.say(f"resume: no checkpoint in {self.out / 'checkpoints'}; starting from iteration 0")
            return
        state_dict, saved_state = read_training_state(folder)
        missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {str(folder)!r} does not fit the model (missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}); resume with the same architecture"
            )
        parts.optimizer.load_state_dict(saved_state["optimizer"])
        parts.scheduler.load_state_dict(saved_state["scheduler"])
        # the current recipe decides the schedule's shape; the checkpoint only its position
        parts.scheduler.total_iters, parts.scheduler.power, parts.scheduler.eta_min = schedule(cfg)
        if saved_state.get("scaler"):
            parts.scaler.load_state_dict(saved_state["scaler"])
        saved = flat_values(TrainConfig.from_flat(saved_state["config"]))  # flat or nested layout
        now = flat_values(cfg)
        changed = {k: (saved[k], now[k]) for k in now if k not in RUNTIME_FIELDS and saved[k] != now[k]}
        if changed:
            warnings.warn(f"resuming with a changed recipe (checkpoint, now): {changed}", stacklevel=4)
        rng = saved_state.get("rng") or []
        if len(rng) == ctx.world_size:
            torch.set_rng_state(rng[ctx.rank]["cpu"])
            if ctx.device.type == "cuda" and rng[ctx.rank].get("cuda") is not None:
                torch.cuda.set_rng_state(rng[ctx.rank]["cuda"], ctx.device)
        else:
            self.log.say(f"resume: world size changed ({len(rng)} -> {ctx.world_size}); RNG states re-seeded")
        state.iteration = int(saved_state["iteration"])
        state.best = saved_state.get("best")
        state.history = list(saved_state.get("history", []))
        state.last_checkpoint = folder
        self.log.say(f"resumed from {folder} at iteration {state.iteration}")
