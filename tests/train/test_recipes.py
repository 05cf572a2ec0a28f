"""Recipes from zoo rows: mmseg's schedule per dataset, the published total batch shared over processes, overrides."""

from __future__ import annotations

import pytest

from deeplabv3p.pretrained.zoo import PRETRAINED_CFGS
from deeplabv3p.train.recipes import recipe_for, resolve_recipe


def test_every_row_has_a_recipe() -> None:
    for name, cfg in PRETRAINED_CFGS.items():
        recipe = recipe_for(name)
        config, _ = resolve_recipe(recipe, world_size=recipe.gpus)
        assert config.iters == cfg.iters and config.batch_size == recipe.batch_per_gpu, name
        assert config.val_interval == config.checkpoint_interval == cfg.iters // 10
        assert (
            config.loss.aux_weight == 0.4 and config.test.scale == cfg.test.scale and config.test.mode == cfg.test.mode
        )


def test_cityscapes_schedule() -> None:
    recipe = recipe_for("deeplabv3plus_r50_d8.cityscapes_512x1024_80k")
    assert (recipe.gpus, recipe.batch_per_gpu, recipe.total_batch) == (4, 2, 8)
    config, record = resolve_recipe(recipe, world_size=1)
    assert config.batch_size == 8 and config.augment.crop_size == (512, 1024) and config.augment.scale == (2048, 1024)
    assert (config.optim.optimizer, config.optim.lr, config.optim.momentum, config.optim.weight_decay) == (
        "sgd",
        0.01,
        0.9,
        5e-4,
    )
    assert (config.optim.power, config.optim.min_lr, config.iters, config.val_interval) == (0.9, 1e-4, 80000, 8000)
    assert record["published_batch"] == {"gpus": 4, "per_gpu": 2, "total": 8}
    assert record["source_config"] == "deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024"
    slide = resolve_recipe(recipe_for("deeplabv3plus_r50_d8.cityscapes_769x769_80k"), 4)[0]
    assert slide.augment.scale == (2049, 1025) and slide.test.mode == "slide" and slide.test.stride == (513, 513)


def test_row_specific_overrides() -> None:
    mapillary = resolve_recipe(recipe_for("deeplabv3plus_r50_d8.mapillary_v1_65_1280x1280_300k"), 2)[0]
    assert (mapillary.optim.optimizer, mapillary.optim.lr, mapillary.optim.weight_decay, mapillary.optim.betas) == (
        "adamw", 1e-4, 1e-4, (0.9, 0.999))  # fmt: skip
    assert (
        mapillary.optim.clip_grad_norm == 0.01
        and mapillary.optim.encoder_lr_mult == 0.1
        and mapillary.optim.min_lr == 0.0
    )
    assert (
        mapillary.augment.crop_size == (512, 1024) and mapillary.pad_size == (1280, 1280) and mapillary.batch_size == 4
    )
    assert mapillary.val_interval == 30000
    context = resolve_recipe(recipe_for("deeplabv3plus_r101_d8.pascal_context_59_480x480_80k"), 4)[0]
    assert (context.optim.lr, context.optim.weight_decay, context.augment.scale, context.batch_size) == (
        0.004,
        1e-4,
        (520, 520),
        4,
    )
    ohem = resolve_recipe(recipe_for("deeplabv3plus_r101_d16_mg124.cityscapes_512x1024_40k"), 4)[0]
    assert ohem.loss.ohem_min_kept == 100000
    amp = resolve_recipe(recipe_for("deeplabv3plus_r101_d8.cityscapes_512x1024_80k_amp"), 4)[0]
    assert amp.amp == "fp16"
    loveda = resolve_recipe(recipe_for("deeplabv3plus_r50_d8.loveda_512x512_80k"), 4)[0]
    assert loveda.augment.scale == (2048, 512) and loveda.test.scale == (1024, 1024)


def test_batch_sharing_and_overrides() -> None:
    recipe = recipe_for("deeplabv3plus_r50_d8.ade20k_512x512_80k")  # 4 x 4
    assert resolve_recipe(recipe, world_size=8)[0].batch_size == 2
    assert resolve_recipe(recipe, world_size=2, overrides={"accum_steps": 2})[0].batch_size == 4
    with pytest.raises(ValueError, match=r"total batch 16 .* does not split over 3 process"):
        resolve_recipe(recipe, world_size=3)
    config, record = resolve_recipe(recipe, world_size=3, overrides={"batch_size": 5, "iters": 100, "lr": 0.02})
    assert (config.batch_size, config.iters, config.optim.lr, config.val_interval) == (5, 100, 0.02, 10)
    assert config.optim.weight_decay == 5e-4 and record["this_run"]["total"] == 15
    with pytest.raises(ValueError, match="not a published zoo row"):
        recipe_for(PRETRAINED_CFGS["deeplabv3plus_r50_d8.ade20k_512x512_80k"].replace(dataset="other"))


def test_adamw_and_gradient_clipping_reach_the_optimiser(tmp_path) -> None:
    import torch
    from nets import tiny_model
    from train_helpers import TINY

    from deeplabv3p.train.demo import make_synthetic_dataset
    from deeplabv3p.train.optim import OptimSettings, build_optimizer
    from deeplabv3p.train.trainer import fit

    assert isinstance(build_optimizer(tiny_model(), OptimSettings(optimizer="adamw")), torch.optim.AdamW)
    data = make_synthetic_dataset(tmp_path / "data", num_train=2, num_val=1, size=48, seed=1)
    from deeplabv3p.train.datasets import SegmentationDataset

    train = SegmentationDataset(data, "train")
    torch.set_num_threads(1)
    moved = {}
    for clip in (None, 1e-3):
        model = tiny_model(num_classes=train.num_classes)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        options = {**TINY, "iters": 1, "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0, "min_lr": 0.0}
        fit(model, train, out=tmp_path / f"run{clip}", clip_grad_norm=clip, **options)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        moved[clip] = float((after - before).norm())
    assert moved[1e-3] <= 1e-3 * 1.001 < moved[None]  # one SGD step of lr 1 moves by the clipped gradient's norm
