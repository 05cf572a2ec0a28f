"""Fine-tuning and evaluation: `fit` (single process, or DDP under torchrun) and `evaluate` (mIoU through `predict`).

`fit` follows mmseg's recipe unless told otherwise: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), PolyLR
(power 0.9, down to 1e-4) stepped every iteration, cross-entropy ignoring 255 plus the auxiliary head's loss at
weight 0.4, and mmseg's augmentation (random resize 0.5-2x, crop with cat_max_ratio 0.75, flip, photometric
distortion). It validates and checkpoints every ``iters // 10`` iterations, keeps the best model (by mIoU) as a
model folder in ``OUT/best`` and resumes exactly from ``OUT/checkpoints`` with ``resume=True``.

Under ``torchrun`` every process runs the same `fit` call: the default process group is set up from the
environment (nccl on GPU, gloo on CPU), the model is wrapped in DistributedDataParallel (with SyncBatchNorm on GPU),
each rank reads its share of the data, validation is sharded and summed, and rank 0 alone logs and writes files.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
import typing
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import distributed
from ..atomic import atomic_write_text
from ..inference.pipeline import normalize, predict
from ..inference.result import default_class_names
from ..pretrained.config import PretrainedCfg, TestMode
from .checkpoint import (
    find_checkpoint,
    read_training_state,
    write_best,
    write_checkpoint,
)
from .config import RUNTIME_FIELDS, AmpMode, TrainConfig
from .loader import AugmentedDataset, PadCollate, TrainSampler
from .losses import SegmentationLoss
from .metrics import ConfusionMatrix, format_table
from .optim import PolyLR, build_optimizer
from .transforms import training_transforms

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus
    from ..inference.result import SegmentationResult

__all__ = ["FitResult", "TrainConfig", "evaluate", "fit"]

_AMP_DTYPES: dict[AmpMode, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
TRAIN_CONFIG_FILE = "train_config.json"
LOG_FILE = "log.jsonl"
# A logged loss this many times the larger of the first iteration's loss and ln(num_classes) (a uniform guess) means
# the run has diverged: no healthy run climbs orders of magnitude above where it started.
DIVERGENCE_FACTOR = 100.0


def _check_labels(mask: torch.Tensor, num_classes: int, ignore_index: int, where: str) -> None:
    """Every label a class index or `ignore_index` (cross-entropy would fail deep inside, or assert on CUDA)."""
    bad = ((mask < 0) | (mask >= num_classes)) & (mask != ignore_index)
    if bool(bad.any()):
        values = torch.unique(mask[bad])[:10].tolist()
        raise ValueError(
            f"{where} holds label(s) {values} outside the {num_classes} classes (valid: 0..{num_classes - 1} and "
            f"ignore_index {ignore_index})"
        )


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


def _weights_cfg(model: DeepLabV3Plus) -> PretrainedCfg:
    """``model.pretrained_cfg``, which training and evaluation read (mean/std, ignore index, class names)."""
    cfg = model.pretrained_cfg
    if cfg is None:
        raise TypeError("model.pretrained_cfg is None: build the model with deeplabv3p.create_model")
    return cfg


def _check_bands(dataset: Any, role: str, in_chans: int) -> None:
    """A dataset that says how many bands it reads (SegmentationDataset) must read the model's."""
    bands = getattr(dataset, "in_chans", in_chans)
    if bands != in_chans:
        raise ValueError(
            f"the {role} set reads {bands}-band images but the model takes in_chans={in_chans}; build it with "
            f"SegmentationDataset(..., in_chans={in_chans})"
        )


def _class_names(dataset: Any, model: DeepLabV3Plus, num_classes: int) -> list[str]:
    for names in (getattr(dataset, "classes", None), getattr(model.pretrained_cfg, "classes", None)):
        if names and len(names) == num_classes:
            return list(names)
    return list(default_class_names(num_classes))


def _eval_sample(dataset: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A raw sample as an (H, W, C) image as stored and an (H, W) mask: `load` when the dataset has it (no
    transforms). The image goes to ``model.predict``, which reads it by the same rules as training does."""
    image, mask = dataset.load(index) if callable(getattr(dataset, "load", None)) else dataset[index]
    if isinstance(mask, torch.Tensor):
        mask = mask.as_subclass(torch.Tensor).cpu().numpy()
    mask = np.asarray(mask)
    if isinstance(image, torch.Tensor):
        image = image.as_subclass(torch.Tensor)
        image = image.permute(1, 2, 0) if image.dim() == 3 and tuple(image.shape[1:]) == mask.shape else image
        image = image.cpu().numpy()
    image = np.asarray(image)
    stored = image.dtype in (np.uint8, np.uint16) or np.issubdtype(image.dtype, np.floating)
    if not stored or image.ndim not in (2, 3) or image.shape[:2] != mask.shape:
        raise ValueError(
            f"evaluation sample {index} must be an (H, W, C) image (uint8, uint16 or float in [0, 1]) with an "
            f"(H, W) mask, got image {image.dtype} {image.shape} and mask {mask.shape}"
        )
    return image, mask


@torch.no_grad()
def evaluate(
    model: DeepLabV3Plus,
    dataset: Any,
    *,
    mode: TestMode | None = None,
    tta: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """mmseg's ``IoUMetric`` over `dataset`: each image goes through ``model.predict`` (whole/slide, optional TTA, as
    the model's pretrained_cfg says unless `mode` is given) and its labels are compared with the ground truth at
    the original resolution.

    Returns ``{"aAcc", "mIoU", "mAcc"}`` plus per-class ``"IoU"`` and ``"Acc"`` dicts, in percent; NaN marks a
    class with no pixels to judge it by (left out of the means). In a process group each rank evaluates its share
    of the images and the counts are summed, so every rank returns the same numbers.
    """
    if not hasattr(model, "predict") and not hasattr(model, "config"):
        raise TypeError(f"model must be a deeplabv3p model with predict(), got {type(model).__name__}")
    # Its own predict() (a deeplabv3p.DeepLabV3Plus, or a stand-in), else the pipeline's for a plain network.
    segment = model.predict if hasattr(model, "predict") else functools.partial(predict, model)
    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty")
    in_chans = getattr(getattr(model, "config", None), "in_chans", None)  # any object with predict() will do
    if in_chans is not None:
        _check_bands(dataset, "evaluation", in_chans)
    if device is not None:
        model.to(distributed.resolve_device(device))
    was_training = model.training
    model.eval()
    rank, world = distributed.current()
    num_classes = model.num_classes
    ignore_index = getattr(dataset, "ignore_index", _weights_cfg(model).ignore_index)
    matrix = ConfusionMatrix(num_classes, ignore_index)
    kwargs: dict[str, Any] = {"tta": tta}
    if mode is not None:
        kwargs["mode"] = mode
    indices = range(rank, len(dataset), world)
    for i in tqdm(indices, desc="evaluate", disable=not (progress and rank == 0), leave=False):
        image, mask = _eval_sample(dataset, i)
        result = typing.cast("SegmentationResult", segment(image, **kwargs))  # one image in, one result out
        labels = result.labels
        matrix.update(torch.as_tensor(np.asarray(labels)), torch.from_numpy(mask.astype(np.int64)))
    distributed.all_reduce_sum(matrix.matrix)
    model.train(was_training)
    return matrix.compute(_class_names(dataset, model, num_classes))


def _schedule(cfg: TrainConfig) -> tuple[int, float, float]:
    """PolyLR's (total_iters, power, eta_min) for a recipe."""
    return cfg.iters, cfg.power, cfg.min_lr


class _Log:
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


class _Run:
    """One call of `fit`: set-up, optional resume, the iteration loop, validation and checkpoints."""

    def __init__(
        self, model: DeepLabV3Plus, train: Any, val: Any, cfg: TrainConfig, out: Path, ctx: distributed.DistContext,
        progress: bool,
    ) -> None:  # fmt: skip
        self.model, self.train_set, self.val_set, self.cfg, self.out, self.ctx = model, train, val, cfg, out, ctx
        self.progress = progress and ctx.is_main
        self.log = _Log(out / LOG_FILE if ctx.is_main else None, self.progress)
        self.iteration = 0
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict[str, Any] | None = None
        self.num_classes: int = model.num_classes
        self.reference_loss: float | None = None  # what "orders of magnitude above the start" is measured against

    # ----- set-up -----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check everything that can be checked before anything is written or the model is changed, then set up."""
        cfg, model, ctx = self.cfg, self.model, self.ctx
        num_classes = model.num_classes
        train_classes = getattr(self.train_set, "num_classes", num_classes)
        if train_classes != num_classes:
            raise ValueError(
                f"the model predicts {num_classes} classes but the training set has {train_classes}; build it with "
                f"create_model(..., num_classes={train_classes})"
            )
        val_classes = getattr(self.val_set, "num_classes", num_classes)
        if self.val_set is not None and val_classes != num_classes:
            raise ValueError(f"the validation set has {val_classes} classes but the model predicts {num_classes}")
        if cfg.class_weight is not None and len(cfg.class_weight) != num_classes:
            raise ValueError(f"class_weight has {len(cfg.class_weight)} entries for {num_classes} classes")
        in_chans = model.config.in_chans
        _check_bands(self.train_set, "training", in_chans)
        if self.val_set is not None:
            _check_bands(self.val_set, "validation", in_chans)
        self.statistics = _weights_cfg(model).for_in_chans(in_chans)
        sync_bn = ctx.distributed and ctx.device.type == "cuda" and cfg.sync_bn
        min_batch = 1 if sync_bn else model.min_train_batch
        if cfg.batch_size < min_batch:
            raise ValueError(
                f"batch_size must be >= {min_batch} for training, got {cfg.batch_size}: BatchNorm statistics of the "
                "image-pool branch are undefined for a single image (with one image per step, train on several "
                "GPUs with SyncBatchNorm)"
            )
        self.ignore_index = getattr(self.train_set, "ignore_index", 255)
        own = getattr(self.train_set, "transforms", None)
        self.transform = None if own is not None else training_transforms(
            cfg.crop_size, cfg.scale, cfg.ratio_range, cfg.cat_max_ratio, cfg.flip_prob, cfg.photometric,
            self.ignore_index,
        )  # fmt: skip
        self._check_first_samples()
        model.pretrained_cfg = self._trained_cfg()
        self.requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        if cfg.freeze_encoder:
            model.freeze_encoder(True)
        model.to(ctx.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.restore_bn = None
        if sync_bn:
            self.restore_bn = distributed.convert_sync_batchnorm(model)
        self.optimizer = build_optimizer(
            model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.encoder_lr_mult, cfg.optimizer, cfg.betas
        )
        self.scheduler = PolyLR(self.optimizer, *_schedule(cfg))
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16")
        self.loss = SegmentationLoss(
            self.ignore_index, cfg.class_weight, cfg.avg_non_ignore, cfg.ohem_min_kept, cfg.ohem_thresh
        ).to(ctx.device)
        self.aux_loss = SegmentationLoss(self.ignore_index, cfg.class_weight, cfg.avg_non_ignore).to(ctx.device)
        self.use_aux = getattr(model, "aux_head", None) is not None and cfg.aux_weight > 0
        torch.manual_seed(cfg.seed * 1000 + ctx.rank)
        if ctx.device.type == "cuda":
            torch.cuda.manual_seed(cfg.seed * 1000 + ctx.rank)

    def _check_first_samples(self) -> None:
        """Read the first training sample (augmented) and the first validation sample, so that a dataset of the
        wrong form or with labels outside the classes fails now rather than after files were written."""
        k = self.model.num_classes
        _, mask = AugmentedDataset(self.train_set, self.transform)[(0, self.cfg.seed)]
        _check_labels(mask, k, self.ignore_index, "training sample 0 (its mask)")
        if self.val_set is not None:
            _, val_mask = _eval_sample(self.val_set, 0)
            ignore = getattr(self.val_set, "ignore_index", _weights_cfg(self.model).ignore_index)
            _check_labels(torch.from_numpy(val_mask.astype(np.int64)), k, ignore, "validation sample 0 (its mask)")

    def _trained_cfg(self) -> PretrainedCfg:
        """The model's weights metadata after this run: the training set's classes, the test-time resize trained
        for, whole-image inference; mean/std and align_corners are kept."""
        cfg, base, data = self.cfg, _weights_cfg(self.model), self.train_set
        k = self.model.num_classes
        classes = tuple(getattr(data, "classes", ()) or ())
        palette = tuple(getattr(data, "palette", ()) or ())
        dataset = str(getattr(data, "name", "custom"))
        origin = f" from {base.name}" if base.tag else ""
        return base.replace(
            tag="", dataset=dataset, num_classes=k,
            classes=classes if len(classes) == k else (), palette=palette if len(palette) == k else (),
            reduce_zero_label=bool(getattr(data, "reduce_zero_label", False)), ignore_index=self.ignore_index,
            crop_size=cfg.crop_size, test_scale=cfg.test_scale or cfg.scale, test_mode=cfg.test_mode,
            slide_crop=cfg.slide_crop, slide_stride=cfg.slide_stride,
            metrics={}, hf_hub_id=None, url=None, sha256_prefix=None, source_config=None, iters=cfg.iters,
            notes=(*base.notes, f"fine-tuned{origin} on {dataset} for {cfg.iters} iterations with deeplabv3p.train"),
        )  # fmt: skip

    def resume(self, resume: Literal[True] | str | Path) -> None:
        folder = find_checkpoint(self.out if resume is True else Path(resume))
        if folder is None:
            if resume is not True:
                raise FileNotFoundError(f"no checkpoint to resume from at {str(resume)!r}")
            self.log.say(f"resume: no checkpoint in {self.out / 'checkpoints'}; starting from iteration 0")
            return
        state_dict, state = read_training_state(folder)
        model = self.model
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {str(folder)!r} does not fit the model (missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}); resume with the same architecture"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the current recipe decides the schedule's shape; the checkpoint only its position
        self.scheduler.total_iters, self.scheduler.power, self.scheduler.eta_min = _schedule(self.cfg)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        saved = TrainConfig.from_dict(state["config"])
        changed = {
            k: (getattr(saved, k), getattr(self.cfg, k))
            for k in TrainConfig.__dataclass_fields__
            if k not in RUNTIME_FIELDS and getattr(saved, k) != getattr(self.cfg, k)
        }
        if changed:
            warnings.warn(f"resuming with a changed recipe (checkpoint, now): {changed}", stacklevel=3)
        rng = state.get("rng") or []
        if len(rng) == self.ctx.world_size:
            torch.set_rng_state(rng[self.ctx.rank]["cpu"])
            if self.ctx.device.type == "cuda" and rng[self.ctx.rank].get("cuda") is not None:
                torch.cuda.set_rng_state(rng[self.ctx.rank]["cuda"], self.ctx.device)
        else:
            self.log.say(f"resume: world size changed ({len(rng)} -> {self.ctx.world_size}); RNG states re-seeded")
        self.iteration = int(state["iteration"])
        self.best = state.get("best")
        self.history = list(state.get("history", []))
        self.last_checkpoint = folder
        self.log.say(f"resumed from {folder} at iteration {self.iteration}")

    def _loader(self) -> Iterator[tuple[torch.Tensor, ...]]:
        cfg, ctx = self.cfg, self.ctx
        consumed = self.iteration * cfg.accum_steps * cfg.batch_size
        sampler = TrainSampler(len(self.train_set), cfg.seed, ctx.rank, ctx.world_size, start=consumed)
        loader = DataLoader(
            AugmentedDataset(self.train_set, self.transform),
            batch_size=cfg.batch_size,
            sampler=sampler,
            collate_fn=PadCollate(cfg.pad_size or cfg.crop_size, self.ignore_index),
            num_workers=cfg.num_workers,
            pin_memory=ctx.device.type == "cuda",
            drop_last=True,
            persistent_workers=cfg.num_workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),  # workers' seeds; keeps the global RNG untouched
        )
        return iter(loader)

    # ----- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> FitResult:
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            record = {"train": cfg.to_dict(), "world_size": ctx.world_size, "model": self.model.config.to_dict()}
            atomic_write_text(self.out / TRAIN_CONFIG_FILE, json.dumps(record, indent=2) + "\n")
        net: nn.Module = self.model
        if ctx.distributed:
            net = DistributedDataParallel(
                self.model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=getattr(self.model, "aux_head", None) is not None and not self.use_aux,
            )
        mean, std = self.statistics.mean, self.statistics.std
        amp = torch.autocast(ctx.device.type, dtype=_AMP_DTYPES[cfg.amp]) if cfg.amp else contextlib.nullcontext()
        batches = self._loader()
        bar = tqdm(total=cfg.iters, initial=self.iteration, desc="train", disable=not self.progress, dynamic_ncols=True)
        running, count, tick = torch.zeros((), device=ctx.device), 0, time.perf_counter()
        net.train()
        while self.iteration < cfg.iters:
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(cfg.accum_steps):
                images, masks, sizes = next(batches)
                _check_labels(
                    masks, self.num_classes, self.ignore_index, f"a training batch at iteration {self.iteration + 1}"
                )
                x = normalize(images.to(ctx.device, non_blocking=True), mean, std, sizes)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = masks.to(ctx.device, non_blocking=True)
                last = micro == cfg.accum_steps - 1
                sync = (
                    net.no_sync() if isinstance(net, DistributedDataParallel) and not last else contextlib.nullcontext()
                )
                with sync:
                    with amp:
                        logits, aux = net(x, return_aux=True)
                    loss = self.loss(logits, y)
                    if self.use_aux and aux is not None:
                        loss = loss + cfg.aux_weight * self.aux_loss(aux, y)
                    self.scaler.scale(loss / cfg.accum_steps).backward()
                running += loss.detach() / cfg.accum_steps
            if cfg.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            if self.reference_loss is None and math.isfinite(first := float(running)):
                self.reference_loss = max(first, math.log(max(self.num_classes, 2)))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            weights = _weights_cfg(self.model)
            if weights.metrics:  # the weights changed: the last validation no longer describes them
                self.model.pretrained_cfg = weights.replace(metrics={})
            self.iteration += 1
            count += 1
            bar.update(1)
            if self.iteration % cfg.log_interval == 0 or self.iteration == cfg.iters:
                tick = self._log_train(running, count, tick, bar)
                running.zero_()
                count = 0
            if self.val_set is not None and (
                self.iteration % cfg.resolved_val_interval == 0 or self.iteration == cfg.iters
            ):
                self._validate()
            if self.iteration % cfg.resolved_checkpoint_interval == 0 or self.iteration == cfg.iters:
                self._checkpoint()
        bar.close()
        del batches  # stops the loader's worker processes
        return self._finish()

    def _log_train(self, running: torch.Tensor, count: int, tick: float, bar: tqdm) -> float:
        cfg, ctx = self.cfg, self.ctx
        loss = float(running) / max(count, 1)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {loss} at iteration {self.iteration}: training diverged. Lower lr (now {cfg.lr}), or "
                "use amp='bf16' instead of 'fp16'"
            )
        if self.reference_loss is not None and loss > DIVERGENCE_FACTOR * self.reference_loss:
            raise FloatingPointError(
                f"the loss is {loss:.4g} at iteration {self.iteration}, over {DIVERGENCE_FACTOR:g} times where it "
                f"started ({self.reference_loss:.4g}): training diverged. Lower lr (now {cfg.lr}) or momentum (now "
                f"{cfg.momentum})"
            )
        now = time.perf_counter()
        seconds = (now - tick) / max(count, 1)
        images = cfg.batch_size * cfg.accum_steps * ctx.world_size
        lr = self.optimizer.param_groups[-1]["lr"]
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images / seconds:.1f}")
        entry = {
            "iter": self.iteration,
            "loss": loss,
            "lr": lr,
            "sec_per_iter": seconds,
            "img_per_sec": images / seconds,
        }
        if ctx.device.type == "cuda":
            entry["max_memory_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
        self.log.record(entry)
        return now

    def _validate(self) -> None:
        """Evaluate on the validation set; the model's pretrained_cfg records the metrics until the next step."""
        model = self.model
        distributed.broadcast_buffers(model)  # every rank evaluates the same model
        metrics = evaluate(model, self.val_set, progress=self.progress)
        self.last_metrics = metrics
        summary = {k: round(metrics[k], 2) for k in ("aAcc", "mIoU", "mAcc")}
        model.pretrained_cfg = _weights_cfg(model).replace(metrics=summary)
        self.history.append({"iter": self.iteration, **{k: metrics[k] for k in ("aAcc", "mIoU", "mAcc")}})
        self.log.record({"iter": self.iteration, "val": metrics})
        self.log.say(f"validation at iteration {self.iteration}:\n{format_table(metrics)}")
        if not math.isnan(metrics["mIoU"]) and (self.best is None or metrics["mIoU"] > self.best["mIoU"]):
            self.best = {"iteration": self.iteration, **{k: metrics[k] for k in ("aAcc", "mIoU", "mAcc")}}
            if self.ctx.is_main:
                write_best(self.out, model, {"iteration": self.iteration, **metrics})
            distributed.barrier()

    def _checkpoint(self) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        rngs = distributed.all_gather_object(rng)
        if self.ctx.is_main:
            state = {
                "iteration": self.iteration,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": rngs,
                "best": self.best,
                "history": self.history,
                "config": self.cfg.to_dict(),
                "world_size": self.ctx.world_size,
            }
            self.last_checkpoint = write_checkpoint(
                self.out, self.iteration, self.model, state, self.cfg.keep_checkpoints
            )
            self.log.record({"iter": self.iteration, "checkpoint": str(self.last_checkpoint)})
        distributed.barrier()

    def _finish(self) -> FitResult:
        distributed.broadcast_buffers(self.model)
        if self.restore_bn is not None:
            self.restore_bn()  # plain BatchNorm again, holding the trained statistics
        for name, p in self.model.named_parameters():
            p.requires_grad_(self.requires_grad.get(name, True))
        self.model.eval()
        best_path = self.out / "best" if self.best is not None else None
        if self.best is not None and self.progress:
            self.log.say(f"best mIoU {self.best['mIoU']:.2f} at iteration {self.best['iteration']} -> {best_path}")
        return FitResult(
            out=self.out,
            iterations=self.iteration,
            metrics=self.last_metrics,
            best_metrics=self.best,
            best_iteration=self.best["iteration"] if self.best else None,
            best_path=best_path,
            last_checkpoint=self.last_checkpoint,
            history=self.history,
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
            mask)`` pairs, the image uint8 or float32 on the 0..255 scale with ``in_chans`` bands. Its samples are
            augmented with mmseg's pipeline unless it has its own ``transforms``.
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
    unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(
            f"fit() got unknown argument(s) {unknown}; accepted: {sorted(TrainConfig.__dataclass_fields__)}"
        )
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
        run = _Run(model, train, val, cfg, Path(out), ctx, progress)
        run.prepare()
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
