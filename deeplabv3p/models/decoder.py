"""DeepLabV3+ decoder (mmseg's ``DepthwiseSeparableASPPHead``), the classifier and the FCN auxiliary head.

Data flow of `DeepLabV3PlusDecoder` on (stride-4 feature, deepest feature):

    deepest -> ASPP [image pool, 1x1, separable 3x3 at each rate] -> concat -> 3x3 conv  (C channels)
    stride-4 -> 1x1 projection (C1 channels)
    resize ASPP output to stride 4 -> concat [ASPP, projection] -> two separable 3x3 convs  (C channels)

Every conv is followed by BatchNorm and ReLU, including the depthwise half of each separable conv;
only the classifiers have a bias.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU."""

    conv: nn.Conv2d
    bn: nn.Module  # BatchNorm2d; SyncBatchNorm in multi-GPU training, Identity once folded into the conv
    act: nn.Module

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, groups: int = 1
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, groups=groups, bias=False
        )
        super().__init__(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels), act=nn.ReLU(inplace=True)))


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (BN, ReLU) then pointwise 1x1 (BN, ReLU)."""

    depthwise: ConvBNReLU
    pointwise: ConvBNReLU

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__(
            OrderedDict(
                depthwise=ConvBNReLU(in_channels, in_channels, 3, dilation=dilation, groups=in_channels),
                pointwise=ConvBNReLU(in_channels, out_channels, 1),
            )
        )


def _set_rate(branch: SeparableConvBNReLU, rate: int) -> None:
    conv = branch.depthwise.conv
    conv.dilation = (rate, rate)
    conv.padding = (rate, rate)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: image-pool branch first, then one branch per rate (1 -> 1x1 conv)."""

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.branches = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1) if r == 1 else SeparableConvBNReLU(in_channels, channels, r)
            for r in rates
        )
        self.rates = tuple(rates)
        self.project = ConvBNReLU(channels * (len(rates) + 1), channels, 3)

    def set_rates(self, rates: tuple[int, ...]) -> None:
        """Change the atrous rates in place (same number of branches; 1x1 branches stay 1x1)."""
        if len(rates) != len(self.rates) or any((a == 1) != (b == 1) for a, b in zip(rates, self.rates)):
            raise ValueError(f"cannot change ASPP rates {self.rates} to {tuple(rates)}: the branch layout differs")
        for branch, rate in zip(self.branches, rates):
            if isinstance(branch, SeparableConvBNReLU):  # the rate-1 branches are 1x1 convs (layout checked above)
                _set_rate(branch, rate)
        self.rates = tuple(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest feature, fused with a projection of the stride-4 feature; output at stride 4."""

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        channels: int,
        low_level_channels: int,
        rates: tuple[int, ...],
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.aspp = ASPP(high_channels, channels, rates)
        self.low_level = ConvBNReLU(low_channels, low_level_channels, 1)
        self.fuse = nn.Sequential(
            SeparableConvBNReLU(channels + low_level_channels, channels),
            SeparableConvBNReLU(channels, channels),
        )

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.low_level(low)
        high = F.interpolate(self.aspp(high), size=low.shape[2:], mode="bilinear", align_corners=self.align_corners)
        return self.fuse(torch.cat([high, low], dim=1))


class Classifier(nn.Module):
    """Dropout2d then a 1x1 conv with bias: features -> per-class logits."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(x))


class FCNHead(nn.Module):
    """Auxiliary head (mmseg ``FCNHead``, one conv): a 3x3 ConvBNReLU then a classifier. Used in training only."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, 3)
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x))
