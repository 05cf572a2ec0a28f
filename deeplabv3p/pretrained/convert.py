"""mmsegmentation DeepLabV3+ state dict -> deeplabv3p state dict.

mmseg's keys (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``; see the reference notes) map one to one onto
ours. Every source key must be mapped; shape checks happen when the result is loaded into a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# (pattern, replacement), first match wins. The V1c deep stem is timm's ``conv1`` Sequential plus ``bn1``.
_KEY_RULES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^backbone\.stem\.([01346])\.", r"encoder.body.conv1.\1."),
        (r"^backbone\.stem\.7\.", r"encoder.body.bn1."),
        (r"^backbone\.(conv1|bn1|layer[1-4])\.", r"encoder.body.\1."),
        (r"^decode_head\.image_pool\.1\.(conv|bn)\.", r"decoder.aspp.pool.1.\1."),
        (r"^decode_head\.aspp_modules\.(\d+)\.(conv|bn)\.", r"decoder.aspp.branches.\1.\2."),
        (r"^decode_head\.aspp_modules\.(\d+)\.(depthwise|pointwise)_conv\.", r"decoder.aspp.branches.\1.\2."),
        (r"^decode_head\.bottleneck\.", r"decoder.aspp.project."),
        (r"^decode_head\.c1_bottleneck\.", r"decoder.low_level."),
        (r"^decode_head\.sep_bottleneck\.(\d+)\.(depthwise|pointwise)_conv\.", r"decoder.fuse.\1.\2."),
        (r"^decode_head\.conv_seg\.", r"classifier.conv."),
        (r"^auxiliary_head\.convs\.0\.", r"aux_head.conv."),
        (r"^auxiliary_head\.conv_seg\.", r"aux_head.classifier.conv."),
    )
)


def is_mmseg_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys are in mmseg's layout (``backbone.`` / ``decode_head.`` prefixes)."""
    return any(k.startswith(("backbone.", "decode_head.")) for k in state_dict)


def convert_key(key: str) -> str | None:
    """Our name for one mmseg key, or None if the key has no counterpart."""
    for pattern, replacement in _KEY_RULES:
        new, n = pattern.subn(replacement, key, count=1)
        if n:
            return new
    return None


def convert_mmseg_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an mmseg DeepLabV3+ state dict to ours; floating tensors become float32 (fp16 checkpoints).

    Raises:
        ValueError: listing every key that has no counterpart.
    """
    converted: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state_dict.items():
        new = convert_key(key)
        if new is None:
            unmapped.append(key)
            continue
        converted[new] = value.float() if value.is_floating_point() else value
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} key(s) of the mmseg checkpoint have no counterpart in a DeepLabV3+ model: "
            f"{unmapped[:20]}{' ...' if len(unmapped) > 20 else ''}. Is this a DeepLabV3+ "
            "(DepthwiseSeparableASPPHead, ResNet backbone) checkpoint?"
        )
    return converted
