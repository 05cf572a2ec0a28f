"""The small networks the tests build, in one place: a DeepLabV3+ narrowed to a few tens of thousands of parameters.

`narrow_model` is any registered architecture (or the generic ``deeplabv3plus`` with any timm encoder) at the
`NARROW` widths; `tiny_model` is the fine-tuning tests' network; `randomize_bn` gives BatchNorm layers running
statistics worth folding or exporting. The mmseg goldens' own narrow networks come from `parity.build`.
"""

from __future__ import annotations

from typing import Any

import torch

import deeplabv3p

# A ResNet at 1/8 of its widths, with decoder and auxiliary head to match.
NARROW: dict[str, Any] = dict(
    encoder_kwargs={"channels": (8, 16, 32, 64)}, decoder_channels=16, low_level_channels=8, aux_channels=8
)
# mmseg's ResNet-V1c stem (three 3x3 convs), narrowed like NARROW.
DEEP_STEM: dict[str, Any] = {"stem_type": "deep", "stem_width": 8}


def narrow_model(
    name: str = "deeplabv3plus_r18_d8",
    *,
    num_classes: int | None = 3,
    seed: int = 0,
    deep_stem: bool = False,
    **overrides: Any,
) -> deeplabv3p.DeepLabV3Plus:
    """`create_model(name)` at the `NARROW` widths, its initial weights seeded.

    `num_classes=None` keeps the architecture's (or tag's) class count; `deep_stem` gives the encoder mmseg's V1c
    stem; `overrides` are further create_model arguments (an encoder other than a ResNet wants ``encoder_kwargs={}``).
    """
    kwargs = {**NARROW, **overrides}
    if deep_stem:
        kwargs["encoder_kwargs"] = {**kwargs["encoder_kwargs"], **DEEP_STEM}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    torch.manual_seed(seed)
    return deeplabv3p.create_model(name, **kwargs)


def tiny_model(num_classes: int = 5, seed: int = 0, **overrides: Any) -> deeplabv3p.DeepLabV3Plus:
    """The fine-tuning tests' network: the generic architecture on a narrow ResNet-18, with an auxiliary head."""
    kwargs = {"encoder": "resnet18", "aux_head": True, **overrides}
    return narrow_model("deeplabv3plus", num_classes=num_classes, seed=seed, **kwargs)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm running statistics away from the identity (mean in [-0.5, 0.5), var in [0.5, 1.5)), so
    folding, exporting or rebuilding a model has something to get wrong. Returns `model`."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model


def model_kwargs_args(**kwargs: Any) -> list[str]:
    """create_model keyword arguments as the CLI's ``--model-kwargs KEY=VALUE`` words."""
    return [f"{key}={value!r}" for key, value in kwargs.items()]
