"""Training recipes from the zoo: the mmseg schedule a published row was trained with, as `TrainConfig` fields.

A row (``deeplabv3plus_r50_d8.cityscapes_512x1024_80k``) gives the crop, the iterations and the test settings; the
per-dataset table here gives what its mmseg config inherits from ``configs/_base_`` (the random-resize scale,
images per GPU, optimiser overrides). Every zoo row was trained on 4 GPUs, so the published total batch is
``4 x per-GPU batch``; `resolve_recipe` shares it over the processes of this run (``world_size x accum_steps``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..pretrained.config import PretrainedCfg
from ..pretrained.registry import get_pretrained_cfg
from .config import TrainConfig

__all__ = ["PUBLISHED_GPUS", "Recipe", "recipe_for", "resolve_recipe"]

PUBLISHED_GPUS = 4  # every DeepLabV3+ zoo config is 4xbB

_SGD = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "power": 0.9, "min_lr": 1e-4}

# What each dataset's mmseg base config sets: RandomResize scale (w, h as mmseg writes it, our (a, b)), images per
# GPU, the optimiser, and fields that differ from the row's crop (Mapillary pads 512x1024 crops to 1280x1280).
_DATASET_RECIPES: dict[str, dict[str, Any]] = {
    "cityscapes": {"scale": (2048, 1024), "batch_per_gpu": 2, **_SGD},
    "ade20k": {"scale": (2048, 512), "batch_per_gpu": 4, **_SGD},
    "voc12aug": {"scale": (2048, 512), "batch_per_gpu": 4, **_SGD},
    "pascal_context": {"scale": (520, 520), "batch_per_gpu": 4, **_SGD, "lr": 0.004, "weight_decay": 1e-4},
    "pascal_context_59": {"scale": (520, 520), "batch_per_gpu": 4, **_SGD, "lr": 0.004, "weight_decay": 1e-4},
    "loveda": {"scale": (2048, 512), "batch_per_gpu": 4, **_SGD},
    "potsdam": {"scale": (512, 512), "batch_per_gpu": 4, **_SGD},
    "vaihingen": {"scale": (512, 512), "batch_per_gpu": 4, **_SGD},
    "isaid": {"scale": (896, 896), "batch_per_gpu": 4, **_SGD},
    "mapillary_v1_65": {
        "scale": (2048, 1024), "batch_per_gpu": 2, "crop_size": (512, 1024), "pad_size": (1280, 1280),
        "optimizer": "adamw", "lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 1e-4, "power": 0.9, "min_lr": 0.0,
        "encoder_lr_mult": 0.1, "clip_grad_norm": 0.01,
    },
}  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """A row's published schedule: where it comes from, the published batch and the `TrainConfig` fields."""

    name: str
    source_config: str
    dataset: str
    gpus: int
    batch_per_gpu: int
    fields: Mapping[str, Any]
    notes: tuple[str, ...] = field(default=())

    @property
    def total_batch(self) -> int:
        return self.gpus * self.batch_per_gpu


def recipe_for(tag: str | PretrainedCfg) -> Recipe:
    """The schedule of a published row (``ARCH.TAG`` or its `PretrainedCfg`), as mmseg's config resolves it."""
    cfg = get_pretrained_cfg(tag) if isinstance(tag, str) else tag
    if cfg.dataset not in _DATASET_RECIPES or cfg.iters is None:
        raise ValueError(f"{cfg.name!r} is not a published zoo row with a recipe (dataset {cfg.dataset!r})")
    table = dict(_DATASET_RECIPES[cfg.dataset])
    batch = table.pop("batch_per_gpu")
    fields: dict[str, Any] = {
        "iters": cfg.iters,
        "crop_size": cfg.crop_size,
        "ratio_range": (0.5, 2.0),
        "cat_max_ratio": 0.75,
        "aux_weight": 0.4,
        "val_interval": cfg.iters // 10,
        "checkpoint_interval": cfg.iters // 10,
        "test": cfg.test,
        **table,
    }
    if cfg.dataset == "cityscapes" and cfg.crop_size == (769, 769):
        fields["scale"] = (2049, 1025)  # cityscapes_769x769.py
    notes = list(cfg.notes)
    if cfg.tag.endswith("_amp"):
        fields["amp"] = "fp16"
        notes.append("mmseg used a static fp16 loss scale of 512; fp16 here uses a dynamic GradScaler")
    if cfg.architecture == "deeplabv3plus_r101_d16_mg124":
        fields["ohem_min_kept"] = 100000
    if cfg.dataset == "voc12aug":
        notes.append("mmseg pads voc12aug crops with raw black before normalising; here padding is 0 after it")
    return Recipe(cfg.name, cfg.source_config or "", cfg.dataset, PUBLISHED_GPUS, batch, fields, tuple(notes))


def resolve_recipe(
    recipe: Recipe, world_size: int = 1, overrides: Mapping[str, Any] | None = None
) -> tuple[TrainConfig, dict[str, Any]]:
    """`TrainConfig` for this run: the recipe with the published total batch shared over ``world_size x
    accum_steps`` processes/steps, then `overrides` (``iters=...``, ``batch_size=...``) on top.

    Returns the config and a record of how it was resolved (printed and saved with the run).
    """
    overrides = dict(overrides or {})
    accum = int(overrides.get("accum_steps", 1))
    share = world_size * accum
    if "batch_size" in overrides:
        batch = int(overrides["batch_size"])
    else:
        if recipe.total_batch % share:
            raise ValueError(
                f"the published total batch {recipe.total_batch} ({recipe.gpus} GPUs x {recipe.batch_per_gpu}) does "
                f"not split over {world_size} process(es) x {accum} accumulation step(s); pick a world size / "
                "--accum-steps that divides it, or set --batch-size"
            )
        batch = recipe.total_batch // share
    fields = {**recipe.fields, "batch_size": batch}
    if "iters" in overrides and "val_interval" not in overrides:  # keep mmseg's ten validations per run
        fields["val_interval"] = max(1, int(overrides["iters"]) // 10)
        fields["checkpoint_interval"] = overrides.get("checkpoint_interval", fields["val_interval"])
    # the overrides go on top of the recipe (a flat --test-mode over the row's test settings)
    config = TrainConfig().replace(**fields).replace(**{k: v for k, v in overrides.items() if k != "batch_size"})
    record = {
        "recipe": recipe.name,
        "source_config": recipe.source_config,
        "dataset": recipe.dataset,
        "published_batch": {"gpus": recipe.gpus, "per_gpu": recipe.batch_per_gpu, "total": recipe.total_batch},
        "this_run": {"world_size": world_size, "per_process": batch, "accum_steps": accum, "total": batch * share},
        "overrides": overrides,
        "notes": list(recipe.notes),
        "train_config": config.to_dict(),
    }
    return config, record
