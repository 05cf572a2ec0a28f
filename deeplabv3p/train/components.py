"""The parts a `fit` run trains with, built once: every check that can fail before anything is written or the model
is changed, then the datasets' attributes, the augmentation and the sample stream, the model placed on its device
(frozen encoder, channels_last, SyncBatchNorm), the optimiser and its schedule, the losses and the grad scaler."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from .. import distributed
from ..inference.images import ImageSpec
from ..inference.resize import rescale_size
from ..pretrained.config import PretrainedCfg
from ..pretrained.test_settings import TestSettings
from ..spelling import arg
from .config import TrainConfig
from .loader import AugmentedDataset, PadCollate, TrainSampler, batches
from .losses import SegmentationLoss
from .optim import PolyLR, build_optimizer
from .samples import (
    DatasetInfo,
    check_bands,
    check_labels,
    dataset_info,
    evaluation_sample,
    image_sizes,
    sample_problems,
    sample_spec,
    weights_cfg,
)  # fmt: skip
from .transforms import training_transforms

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus


@dataclass
class Components:
    """What one run trains with (built by `build_components`)."""

    info: DatasetInfo  # the training set's attributes
    val_info: DatasetInfo | None  # the validation set's, or None without one
    spec: ImageSpec  # how samples are read
    statistics: PretrainedCfg  # mean/std for the model's bands
    transform: Callable[[Any, Any], tuple[Any, Any]] | None  # mmseg's augmentation, or None: the dataset's own
    optimizer: torch.optim.Optimizer
    scheduler: PolyLR
    scaler: torch.amp.GradScaler
    loss: SegmentationLoss
    aux_loss: SegmentationLoss
    use_aux: bool  # the auxiliary head's loss is added
    requires_grad: dict[str, bool]  # before the run, restored by `release`
    restore_bn: Callable[[], None] | None  # turns SyncBatchNorm back into BatchNorm

    @property
    def ignore_index(self) -> int:
        return self.info.ignore_index


def schedule(cfg: TrainConfig) -> tuple[int, float, float]:
    """PolyLR's (total_iters, power, eta_min) for a recipe."""
    return cfg.iters, cfg.optim.power, cfg.optim.min_lr


def _uses_sync_bn(cfg: TrainConfig, ctx: distributed.DistContext) -> bool:
    return ctx.distributed and ctx.device.type == "cuda" and cfg.sync_bn


def _check_run(
    model: DeepLabV3Plus, train: Any, val: Any, cfg: TrainConfig, ctx: distributed.DistContext
) -> tuple[DatasetInfo, DatasetInfo | None]:
    """The datasets' attributes, checked against the model and the recipe."""
    num_classes = model.num_classes
    info = dataset_info(train, model)
    val_info = dataset_info(val, model) if val is not None else None
    if info.num_classes != num_classes:
        raise ValueError(
            f"the model predicts {num_classes} classes but the training set has {info.num_classes}; build it with "
            f"create_model(..., num_classes={info.num_classes})"
        )
    if val_info is not None and val_info.num_classes != num_classes:
        raise ValueError(f"the validation set has {val_info.num_classes} classes but the model predicts {num_classes}")
    class_weight = cfg.loss.class_weight
    if class_weight is not None and len(class_weight) != num_classes:
        raise ValueError(f"class_weight has {len(class_weight)} entries for {num_classes} classes")
    in_chans = model.config.in_chans
    check_bands(info, "training", in_chans)
    if val_info is not None:
        check_bands(val_info, "validation", in_chans)
    min_batch = 1 if _uses_sync_bn(cfg, ctx) else model.min_train_batch
    if cfg.batch_size < min_batch:
        raise ValueError(
            f"batch_size must be >= {min_batch} for training, got {cfg.batch_size}: BatchNorm statistics of the "
            "image-pool branch are undefined for a single image (with one image per step, train on several "
            "GPUs with SyncBatchNorm)"
        )
    share = -(-len(train) // ctx.world_size)  # this process's samples per epoch
    if cfg.batch_size > share:
        where = f" per process ({ctx.world_size} processes)" if ctx.world_size > 1 else ""
        text = (
            f"batch_size={cfg.batch_size} is larger than the training set ({len(train)} samples{where}): every "
            f"batch holds each image about {cfg.batch_size / share:.1f} times"
        )
        if cfg.batch_size > 2 * share:  # a typo or a wrong unit, not a small dataset: refuse before any work
            raise ValueError(f"{text}; pass {arg('batch_size', share)} or fewer")
        warnings.warn(f"{text} (a small dataset: fine, if slower per step than {arg('batch_size', share)})",
                      stacklevel=3)  # fmt: skip
    return info, val_info


MAX_PROBLEMS_SHOWN = 20


def _check_data(train: Any, val: Any, info: DatasetInfo, val_info: DatasetInfo | None, ctx: distributed.DistContext,
                progress: bool) -> None:  # fmt: skip
    """``check_data``: every sample of both sets read up front (each rank its share); one ValueError lists the bad
    ones."""
    problems: list[str] = []
    total = 0
    for dataset, dinfo, role in ((train, info, "training"), (val, val_info, "validation")):
        if dataset is None or dinfo is None:
            continue
        total += len(dataset)
        mine = range(ctx.rank, len(dataset), ctx.world_size)
        problems += sample_problems(dataset, dinfo, role, mine, progress and ctx.is_main)
    problems = [p for rank in distributed.all_gather_object(problems) for p in rank]
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise ValueError(
            f"check_data: {len(problems)} of {total} samples have problems (nothing was trained or written):\n  "
            + "\n  ".join(shown)
            + more
        )


def _check_first_samples(
    model: DeepLabV3Plus, train: Any, val: Any, info: DatasetInfo, val_info: DatasetInfo | None,
    transform: Callable[[Any, Any], tuple[Any, Any]] | None, spec: ImageSpec, seed: int, test: TestSettings,
) -> None:  # fmt: skip
    """Read the first training sample (augmented) and the first validation sample, so that a dataset of the
    wrong form or with labels outside the classes fails now rather than after files were written."""
    k = model.num_classes
    _, mask = AugmentedDataset(train, transform, spec)[(0, seed)]
    check_labels(mask, k, info.ignore_index, "training sample 0 (its mask)")
    if not bool((mask != info.ignore_index).any()):  # sample 0 has nothing labelled: has any sample?
        _check_something_labelled(train, info, spec)
    if val is not None and val_info is not None:
        _, val_mask = evaluation_sample(val, val_info, 0, "validation")
        check_labels(torch.from_numpy(val_mask), k, val_info.ignore_index, "validation sample 0 (its mask)")
        _check_validation_size(model, val, val_mask.shape, test)


LABELLED_SAMPLE = 8  # training masks read up front to find a labelled pixel


def _check_something_labelled(train: Any, info: DatasetInfo, spec: ImageSpec) -> None:
    """Refuse a training set whose first masks (up to `LABELLED_SAMPLE`, as stored) are all `ignore_index`: such a
    run trains to the end on a zero loss and validates to NaN. A wrong ``reduce_zero_label`` (a binary mask of
    0/1 turns into 255/0) or a label file of another encoding are the usual causes."""
    count = min(len(train), LABELLED_SAMPLE)
    reader = AugmentedDataset(train, None, spec)
    for index in range(count):
        _, mask = reader[(index, 0)]
        if bool((mask != info.ignore_index).any()):
            return
    raise ValueError(
        f"every pixel of the first {count} training masks is ignore_index {info.ignore_index}: there is nothing to "
        "learn (the loss would be zero and validation NaN). Check the label values and reduce_zero_label "
        "(--reduce-zero-label / --no-reduce-zero-label): with it, label 0 becomes ignored"
    )


def _network_size(height: int, width: int, test: TestSettings) -> tuple[int, int]:
    """The size at which validation gives an image of ``(height, width)`` to the network (one window at most)."""
    if test.scale is not None:
        height, width = rescale_size(height, width, test.scale) if test.keep_ratio else test.scale
    if test.mode == "slide" and test.window is not None:
        height, width = min(height, test.window[0]), min(width, test.window[1])
    return height, width


def _check_validation_size(model: DeepLabV3Plus, val: Any, first: tuple[int, ...], test: TestSettings) -> None:
    """Validation images that reach the network smaller than it takes (its output stride's minimum) fail now,
    not at the first validation after training time was spent. The sizes are read from file headers where the
    dataset has them, else the first sample's."""
    sizes = image_sizes(val) or [(int(first[0]), int(first[1]))]
    m = model.min_input_size
    height, width = min(sizes, key=lambda s: min(_network_size(s[0], s[1], test)))
    net_h, net_w = _network_size(height, width, test)
    if min(net_h, net_w) < m:
        scaled = f", {net_h}x{net_w} after the test rescale" if (net_h, net_w) != (height, width) else ""
        raise ValueError(
            f"validation sample 0 of the set: images as small as {height}x{width} (H x W){scaled} reach the network, "
            f"which needs at least {m}x{m} pixels (its output stride): give a test scale that enlarges them "
            f"({arg('test_scale', (2 * m, 2 * m))}), or leave them out of the validation set"
        )


# Measured on a 2-core CPU (issue 21): fine-tuning on 160x120 images with the default crop (512, 512) and batch 8.
OVERSIZED_CROP_COST = (
    "fine-tuning on 120x160 (H x W) images with crop (512, 512) and batch 8 took 44 s/iteration on 2 cores"
)


def crop_hint(cfg: TrainConfig, sizes: list[tuple[int, int]] | None, total: int) -> str | None:
    """A warning when the training crop holds every image of `sizes` (a sample of `total`) whole, at the
    augmentation's scale before its random ratio: each crop is then mostly padding. Suggests the images' size."""
    if not sizes:
        return None
    aug = cfg.augment
    scaled = [rescale_size(h, w, aug.scale) if aug.scale is not None else (h, w) for h, w in sizes]
    crop_h, crop_w = aug.crop_size
    if any(h > crop_h or w > crop_w or (h, w) == (crop_h, crop_w) for h, w in scaled):
        return None
    high, wide = max(h for h, _ in scaled), max(w for _, w in scaled)
    filled = sum(h * w for h, w in scaled) / len(scaled) / (crop_h * crop_w)
    at = f" at scale {aug.scale}" if aug.scale is not None else ""
    return (
        f"crop_size {aug.crop_size} is larger than every training image ({len(sizes)} of {total} sampled, the "
        f"largest {high}x{wide} (H x W){at}): before the random resize by {aug.ratio_range}, the images fill "
        f"{filled:.0%} of a crop and the rest of every {crop_h}x{crop_w} input of the batch of {cfg.batch_size} is "
        f"padding ({OVERSIZED_CROP_COST}). Pass crop_size=({high}, {wide}) (--crop-size {high} {wide})"
    )


def trained_cfg(base: PretrainedCfg, info: DatasetInfo, cfg: TrainConfig, num_classes: int) -> PretrainedCfg:
    """The model's weights metadata after this run: the training set's classes and raster bands, the test-time
    resize trained for, whole-image inference; mean/std and align_corners are kept."""
    k = num_classes
    classes, palette, dataset = info.classes, info.palette, info.name
    origin = f" from {base.name}" if base.tag else ""
    return base.replace(
        tag="", dataset=dataset, num_classes=k,
        classes=classes if len(classes) == k else (), palette=palette if len(palette) == k else (),
        reduce_zero_label=info.reduce_zero_label, ignore_index=info.ignore_index, bands=info.bands,
        crop_size=cfg.augment.crop_size, test=cfg.resolved_test,
        metrics={}, hf_hub_id=None, url=None, sha256_prefix=None, source_config=None, iters=cfg.iters,
        notes=(*base.notes, f"fine-tuned{origin} on {dataset} for {cfg.iters} iterations with deeplabv3p.train"),
    )  # fmt: skip


def build_components(
    model: DeepLabV3Plus, train: Any, val: Any, cfg: TrainConfig, ctx: distributed.DistContext, progress: bool = False
) -> Components:
    """Check the run (every sample with ``check_data``, a progress bar when `progress`), then set it up: the model
    gets its trained-for metadata, is placed on ``ctx.device`` and seeded per rank; the optimiser, schedule,
    losses and scaler are made for it."""
    info, val_info = _check_run(model, train, val, cfg, ctx)
    in_chans = model.config.in_chans
    ignore_index = info.ignore_index
    statistics = weights_cfg(model).for_in_chans(in_chans)
    spec = sample_spec(in_chans)
    transform = None if info.transforms is not None else training_transforms(cfg.augment, ignore_index)
    if cfg.check_data:
        _check_data(train, val, info, val_info, ctx, progress)
    _check_first_samples(model, train, val, info, val_info, transform, spec, cfg.seed, cfg.resolved_test)
    if transform is not None and ctx.is_main and (hint := crop_hint(cfg, image_sizes(train), len(train))):
        warnings.warn(hint, stacklevel=4)
    model.pretrained_cfg = trained_cfg(weights_cfg(model), info, cfg, model.num_classes)
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    restore_bn = _place(model, cfg, ctx)
    optimizer = build_optimizer(model, cfg.optim)
    parts = Components(
        info=info,
        val_info=val_info,
        spec=spec,
        statistics=statistics,
        transform=transform,
        optimizer=optimizer,
        scheduler=PolyLR(optimizer, *schedule(cfg)),
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16"),
        loss=SegmentationLoss(ignore_index, cfg.loss).to(ctx.device),
        aux_loss=SegmentationLoss(ignore_index, cfg.loss.without_ohem()).to(ctx.device),
        use_aux=getattr(model, "aux_head", None) is not None and cfg.loss.aux_weight > 0,
        requires_grad=requires_grad,
        restore_bn=restore_bn,
    )
    torch.manual_seed(cfg.seed * 1000 + ctx.rank)
    if ctx.device.type == "cuda":
        torch.cuda.manual_seed(cfg.seed * 1000 + ctx.rank)
    return parts


def _place(model: DeepLabV3Plus, cfg: TrainConfig, ctx: distributed.DistContext) -> Callable[[], None] | None:
    """Freeze the encoder if asked, move the model to the device (channels_last if asked) and convert it to
    SyncBatchNorm on GPUs under torchrun; returns what turns SyncBatchNorm back, if converted."""
    if cfg.freeze_encoder:
        model.freeze_encoder(True)
    model.to(ctx.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return distributed.convert_sync_batchnorm(model) if _uses_sync_bn(cfg, ctx) else None


def release(model: DeepLabV3Plus, parts: Components) -> None:
    """Undo the run's placement: plain BatchNorm again (holding the trained statistics), the parameters'
    ``requires_grad`` as before, eval mode."""
    distributed.broadcast_buffers(model)
    if parts.restore_bn is not None:
        parts.restore_bn()
    for name, p in model.named_parameters():
        p.requires_grad_(parts.requires_grad.get(name, True))
    model.eval()


def sample_stream(
    train: Any, parts: Components, cfg: TrainConfig, ctx: distributed.DistContext, iteration: int
) -> Iterator[tuple[torch.Tensor, ...]]:
    """This rank's endless stream of padded batches ``(images, masks, sizes)``, from the sample after the
    `iteration` steps already taken."""
    consumed = iteration * cfg.accum_steps * cfg.batch_size
    sampler = TrainSampler(len(train), cfg.seed, ctx.rank, ctx.world_size, start=consumed)
    loader = DataLoader(
        AugmentedDataset(train, parts.transform, parts.spec),
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=PadCollate(cfg.resolved_pad_size, parts.ignore_index),
        num_workers=cfg.num_workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
        persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed),  # workers' seeds; keeps the global RNG untouched
    )
    return batches(loader)
