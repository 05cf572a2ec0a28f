"""Encoder: a timm ``features_only`` trunk that yields the stride-4 feature and every deeper one.

The decoder needs the low-level feature at reduction 4 and the deepest feature at the output stride; the auxiliary
head takes the one before the deepest. Reductions are read from timm's ``feature_info`` after the model is built,
so what is promised is what timm actually delivered.

Two dilation policies exist. ``"timm"`` keeps what timm does for the requested output stride. ``"mmseg"`` rewrites
the dilations of a timm ResNet to mmsegmentation's rules, which the published checkpoints were trained with:
the first block of a dilated stage uses half the stage dilation (contract_dilation), a BasicBlock dilates only its
first 3x3 conv, and a multi-grid replaces the last stage's per-block dilations as given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import timm
import torch
from timm.models import FeatureInfo
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from .config import OUTPUT_STRIDES, DilationPolicy, OutputStride

# mmseg's per-stage (dilation) for a ResNet at each output stride; the stride-2 placement matches timm's.
_MMSEG_STAGE_DILATIONS: dict[OutputStride, tuple[int, ...]] = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2), 32: (1, 1, 1, 1)}
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
# The timm encoder families tested at output strides 8, 16 and 32 (tests/models/test_model.py builds one of each).
TESTED_FAMILIES = ("ResNet/ResNet-D", "ConvNeXt", "EfficientNet", "RegNet", "MobileNetV3")


def set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    """Change a conv's dilation in place, keeping 'same' padding; weights are unaffected (encoder and ASPP)."""
    k = conv.kernel_size[0]
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation * (k - 1) // 2, dilation * (k - 1) // 2)


def mmseg_block_dilations(num_blocks: int, stage_dilation: int, multi_grid: tuple[int, ...] | None = None) -> list[int]:
    """Per-block dilations of one ResNet stage under mmseg's ``ResLayer`` rule (contract_dilation=True)."""
    if multi_grid is not None:
        if len(multi_grid) != num_blocks:
            raise ValueError(
                f"multi_grid {tuple(multi_grid)} must have one dilation per block of the last stage "
                f"({num_blocks} blocks)"
            )
        return list(multi_grid)
    first = stage_dilation // 2 if stage_dilation > 1 else stage_dilation
    return [first] + [stage_dilation] * (num_blocks - 1)


def _feature_info(body: nn.Module) -> FeatureInfo:
    """The ``feature_info`` every timm ``features_only`` model carries (typed by torch as a submodule lookup)."""
    return cast(FeatureInfo, body.feature_info)


def apply_mmseg_dilation(body: nn.Module, output_stride: OutputStride, multi_grid: tuple[int, ...] | None) -> None:
    """Rewrite the 3x3 conv dilations of a timm ResNet trunk to mmseg's policy."""
    missing = [name for name in _RESNET_STAGES if not hasattr(body, name)]
    if missing:
        raise ValueError(
            "dilation_policy='mmseg' needs a timm ResNet encoder (resnet18/34/50/101/152 and their variants); "
            f"this encoder has no {missing}. Use dilation_policy='timm' for other encoders."
        )
    stage_dilations = _MMSEG_STAGE_DILATIONS[output_stride]
    for stage_idx, name in enumerate(_RESNET_STAGES):
        stage = getattr(body, name)
        grid = multi_grid if stage_idx == len(_RESNET_STAGES) - 1 else None
        for block, dilation in zip(stage, mmseg_block_dilations(len(stage), stage_dilations[stage_idx], grid)):
            if isinstance(block, BasicBlock):
                set_dilation(block.conv1, dilation)
                set_dilation(block.conv2, 1)
            elif isinstance(block, Bottleneck):
                set_dilation(block.conv2, dilation)
            else:
                raise ValueError(
                    f"dilation_policy='mmseg' supports timm BasicBlock/Bottleneck ResNets, found {type(block).__name__}"
                )


class Encoder(nn.Module):
    """Feature extractor returning ``[stride-4 feature, ..., deepest feature]``.

    Args:
        name: timm model name.
        output_stride: reduction of the deepest feature (8, 16 or 32).
        dilation_policy: ``"timm"`` or ``"mmseg"`` (see module docstring).
        multi_grid: per-block dilations of the last stage (mmseg policy only).
        in_chans: input channels.
        pretrained: load timm's ImageNet weights for the encoder.
        timm_kwargs: extra keyword arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        name: str,
        output_stride: OutputStride = 16,
        dilation_policy: DilationPolicy = "timm",
        multi_grid: tuple[int, ...] | None = None,
        in_chans: int = 3,
        pretrained: bool = False,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.dilation_policy = dilation_policy
        self.multi_grid = multi_grid
        self.in_chans = in_chans
        self.timm_kwargs = dict(timm_kwargs or {})
        if multi_grid is not None and dilation_policy != "mmseg":
            raise ValueError("multi_grid is only supported with dilation_policy='mmseg'")
        self.body = self._build(output_stride, pretrained)
        self.output_stride = output_stride
        self._first, self.channels, self.reductions = self._select_features(self.body)

    def _build(self, output_stride: OutputStride, pretrained: bool) -> nn.Module:
        try:
            body = self._create(output_stride, pretrained)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                close = timm.list_models(f"*{self.name.split('.')[0][:6]}*")[:8]
                raise ValueError(
                    f"encoder={self.name!r} is not a timm model. Similar timm names: {close}. "
                    "See timm.list_models() for all of them."
                ) from None
            raise self._stride_error(output_stride, e) from e
        except (AssertionError, TypeError, ValueError, NotImplementedError) as e:
            raise self._stride_error(output_stride, f"{type(e).__name__}: {e}".rstrip(": ")) from e
        delivered = _feature_info(body).reduction()[-1]
        if delivered != output_stride:
            raise self._stride_error(output_stride, f"timm delivered reduction {delivered}")
        if self.dilation_policy == "mmseg":
            apply_mmseg_dilation(body, output_stride, self.multi_grid)
        return body

    def _create(self, output_stride: OutputStride, pretrained: bool) -> nn.Module:
        # Stride 32 is every encoder's native stride; not passing it lets encoders without dilation support work.
        stride_kwargs: dict[str, Any] = {} if output_stride == 32 else {"output_stride": output_stride}
        return timm.create_model(
            self.name,
            pretrained=pretrained,
            features_only=True,
            in_chans=self.in_chans,
            **stride_kwargs,
            **self.timm_kwargs,
        )

    def _stride_error(self, output_stride: OutputStride, cause: object) -> ValueError:
        """The error of a trunk timm would not build: about the stride when another stride works, else about the
        encoder and its arguments (an unknown or wrong ``encoder_kwargs`` entry fails at every stride)."""
        supported = [os_ for os_ in OUTPUT_STRIDES if os_ != output_stride and self._can_build(os_)]
        native = self._native_reductions()
        if not supported and native is not None and 4 not in native:
            return ValueError(
                f"encoder {self.name!r} gives features at reductions {native} only, and DeepLabV3+ needs a stride-4 "
                "feature and deeper ones: plain (non-hierarchical) transformers such as ViT are not supported. "
                f"Use a hierarchical encoder; tested families: {', '.join(TESTED_FAMILIES)}."
            )
        if not supported:
            given = f" with encoder_kwargs={self.timm_kwargs}" if self.timm_kwargs else ""
            return ValueError(
                f"timm cannot build encoder {self.name!r}{given} as a features_only trunk at any output stride "
                f"({cause}). Check encoder_kwargs against timm.create_model({self.name!r}, ...)."
            )
        return ValueError(
            f"encoder {self.name!r} cannot give output_stride={output_stride} ({cause}). "
            f"Output strides it supports: {supported or 'none of ' + str(list(OUTPUT_STRIDES))}."
        )

    def _native_reductions(self) -> list[int] | None:
        """The feature reductions of the trunk timm builds without an output stride, None where it builds none."""
        try:
            with torch.device("meta"):
                return list(_feature_info(self._create(32, pretrained=False)).reduction())
        except Exception:
            return None

    def _can_build(self, output_stride: OutputStride) -> bool:
        try:
            with torch.device("meta"):
                body = self._create(output_stride, pretrained=False)
        except Exception:
            return False
        return _feature_info(body).reduction()[-1] == output_stride

    def _select_features(self, body: nn.Module) -> tuple[int, list[int], list[int]]:
        """Index of the stride-4 feature, then channels and reductions from it to the deepest."""
        reductions = _feature_info(body).reduction()
        channels = _feature_info(body).channels()
        stride4 = [i for i, r in enumerate(reductions) if r == 4]
        if not stride4 or len(reductions) - stride4[-1] < 2:
            raise ValueError(
                f"encoder {self.name!r} must give a stride-4 feature and deeper ones for DeepLabV3+, "
                f"but its feature reductions are {reductions}"
            )
        first = stride4[-1]
        return first, channels[first:], reductions[first:]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)[self._first :]

    def set_output_stride(self, output_stride: OutputStride) -> None:
        """Rebuild the trunk for another output stride and move the current weights into it."""
        if output_stride == self.output_stride:
            return
        reference = next(self.body.parameters())
        frozen = {n for n, p in self.body.named_parameters() if not p.requires_grad}
        body = self._build(output_stride, pretrained=False)
        body.load_state_dict(self.body.state_dict())
        body = body.to(device=reference.device, dtype=reference.dtype).train(self.training)
        if reference.dim() == 4 and not reference.is_contiguous():
            body = body.to(memory_format=torch.channels_last)
        for n, p in body.named_parameters():
            p.requires_grad_(n not in frozen)
        self.body = body
        self.output_stride = output_stride
        self._first, self.channels, self.reductions = self._select_features(self.body)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's activation checkpointing of the trunk's stages (the trunk must define ``set_grad_checkpointing``)."""
        cast(Callable[[bool], None], self.body.set_grad_checkpointing)(enable)
