"""Inference fast paths: BatchNorm folded into the convolutions, channels_last, CPU-friendly depthwise padding.

In eval mode a BatchNorm is a per-channel affine map, so ``bn(conv(x))`` is again a convolution with rescaled weights
and a bias. Folding removes one full pass over every activation, which is what bounds a DeepLabV3+ at output stride
8 on a CPU. The folded weights are computed in float64 and rounded once, so a folded fp32 model matches the original
to float32 rounding: ``max|folded - original| <= FOLD_RTOL * max|original|`` on the logits (checked in the tests).

Only pairs whose data flow is known are folded: consecutive children of an ``nn.Sequential`` or of timm's
feature-extraction wrapper (a stem conv followed by ``bn1``), timm ResNet blocks (``convN`` -> ``bnN``) and timm
``ConvNormAct``. Anything else is left as it is, so a folded model of any encoder computes the same function.

`optimize_for_inference` also pre-pads dilated depthwise convs on the CPU (`PrePaddedConv2d`) and keeps the first
conv and the classifier in float32 under autocast (`Float32Conv2d`); each is the same function as before.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any, TypeGuard, TypeVar, cast

import torch
from timm.layers import BatchNormAct2d, ConvNormAct
from timm.models._features import FeatureDictNet
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from ..fields import check_bool
from .precision import resolve_dtype

# Documented tolerance of a BN-folded fp32 model against the original, relative to the largest |logit|.
FOLD_RTOL = 1e-4

# timm ResNet blocks: each convN feeds bnN directly.
_BLOCK_PAIRS = {
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}

_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


def _conv_like(conv: nn.Conv2d, cls: type[nn.Conv2d], bias: bool) -> nn.Conv2d:
    """A new `cls` (freshly initialised weights) with the geometry, device and dtype of `conv`."""
    # torch annotates a Conv2d's sizes as tuple[int, ...]; a 2-d conv's are always two ints
    kernel_size, stride, dilation = (cast(tuple[int, int], v) for v in (conv.kernel_size, conv.stride, conv.dilation))
    padding = cast("str | tuple[int, int]", conv.padding)
    return cls(
        conv.in_channels, conv.out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
        groups=conv.groups, bias=bias, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``nn.Conv2d`` computing ``bn(conv(x))`` of an eval-mode BatchNorm, with a bias.

    The arithmetic is done in float64 on the CPU and the result keeps the conv's dtype and device.
    """
    if not _is_foldable_bn(bn):
        raise ValueError(f"cannot fold {type(bn).__name__}: BatchNorm needs running statistics (track_running_stats)")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"BatchNorm has {bn.num_features} channels but the conv gives {conv.out_channels}")

    def f64(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().double()

    weight = f64(conv.weight)
    bias = f64(conv.bias) if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    assert bn.running_mean is not None and bn.running_var is not None  # _is_foldable_bn checked them
    scale = torch.rsqrt(f64(bn.running_var) + bn.eps)
    shift = -f64(bn.running_mean) * scale
    if bn.affine:
        scale = scale * f64(bn.weight)
        shift = shift * f64(bn.weight) + f64(bn.bias)
    fused = _conv_like(conv, nn.Conv2d, bias=True)
    with torch.no_grad():
        fused.weight.copy_(weight * scale.reshape(-1, 1, 1, 1))
        assert fused.bias is not None  # built with bias=True
        fused.bias.copy_(bias * scale + shift)
    if conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous():
        fused = fused.to(memory_format=torch.channels_last)
    return fused


def _is_foldable_conv(module: nn.Module | None) -> TypeGuard[nn.Conv2d]:
    # Exact type: subclasses (weight-standardised convs, same-padding convs) transform the weight in forward.
    return type(module) is nn.Conv2d


def _is_foldable_bn(module: nn.Module | None) -> TypeGuard[nn.BatchNorm2d]:
    return (
        isinstance(module, nn.BatchNorm2d)  # for the type checker; the exact type decides
        and type(module) in (nn.BatchNorm2d, BatchNormAct2d)
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


def _bn_remainder(bn: nn.Module) -> nn.Module:
    """What is left of a BatchNorm once folded: nothing, or the dropout and activation a timm BatchNormAct2d ends in."""
    if isinstance(bn, BatchNormAct2d):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def _last_conv(module: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, name) of the conv whose output leaves `module` last, for a conv or a Sequential ending in one."""
    if isinstance(module, nn.Sequential) and len(module):
        name = list(module._modules)[-1]
        child = module._modules[name]
        if _is_foldable_conv(child):
            return module, name
        return _last_conv(child)
    return None


def _conv_bn_pairs(root: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Module, str]]:
    """Yield (conv parent, conv name, bn parent, bn name) for every conv -> BatchNorm edge of known data flow."""
    for parent in root.modules():
        if isinstance(parent, nn.Sequential | FeatureDictNet):
            # Children run in registration order, each on the previous one's output.
            names = list(parent._modules)
            taps = set(getattr(parent, "return_layers", {}))
            for a, b in itertools.pairwise(names):
                first, second = parent._modules[a], parent._modules[b]
                if not _is_foldable_bn(second) or a in taps:
                    continue
                if _is_foldable_conv(first):
                    yield parent, a, parent, b
                elif isinstance(parent, FeatureDictNet) and (inner := _last_conv(first)) is not None:
                    yield inner[0], inner[1], parent, b  # deep stem: Sequential(conv, bn, act, ..., conv) then bn1
        for block_type, pairs in _BLOCK_PAIRS.items():
            if type(parent) is block_type:
                for conv_name, bn_name in pairs:
                    yield parent, conv_name, parent, bn_name
        if type(parent) is ConvNormAct:
            yield parent, "conv", parent, "bn"


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution into it, in place.

    Returns the number of folded pairs. The model must be in eval mode: a folded model has no batch statistics to
    train with.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError(
            "fold_batchnorm needs a model in eval mode (call model.eval()); training uses batch statistics"
        )
    pairs = [
        (cp, cn, bp, bn)
        for cp, cn, bp, bn in _conv_bn_pairs(model)
        if _is_foldable_conv(cp._modules[cn]) and _is_foldable_bn(bp._modules[bn])
    ]
    for conv_parent, conv_name, bn_parent, bn_name in pairs:
        # filtered above: a plain Conv2d and a BatchNorm2d with running statistics
        conv, bn = cast(nn.Conv2d, conv_parent._modules[conv_name]), cast(nn.BatchNorm2d, bn_parent._modules[bn_name])
        setattr(conv_parent, conv_name, fuse_conv_bn(conv, bn))
        setattr(bn_parent, bn_name, _bn_remainder(bn))
    return len(pairs)


class PrePaddedConv2d(nn.Conv2d):
    """A Conv2d that zero-pads its input itself on the CPU, then convolves without implicit padding.

    Same function as the conv it replaces. oneDNN's CPU depthwise kernels leave their fast path when the implicit
    padding is large (the ASPP's dilations 12, 24 and 36 pad by as much), running up to 30x slower; an explicit pad
    costs one copy and keeps the fast kernel. Elsewhere (GPU, tracing for export) it is a plain conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = cast(tuple[int, int], self.padding)  # only built for convs with (h, w) int padding
        if x.device.type != "cpu" or torch.jit.is_tracing() or torch.jit.is_scripting():
            return super().forward(x)
        if torch.compiler.is_compiling():
            padded = nn.functional.pad(x, (pw, pw, ph, ph))  # Inductor fuses it into one kernel
        else:
            # Keep the input's memory layout (F.pad would return NCHW for a channels_last input).
            n, c, h, w = x.shape
            layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
            padded = torch.empty((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype, device=x.device, memory_format=layout)
            padded.zero_()
            padded[:, :, ph : ph + h, pw : pw + w] = x
        return nn.functional.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class Float32Conv2d(nn.Conv2d):
    """A Conv2d that runs in its weights' precision even under ``torch.autocast``.

    Used for the two layers where reduced precision costs the most agreement for the least time: the first conv,
    whose input is the image itself (bf16 keeps about 3 significant digits: one grey level), and the classifier,
    whose outputs are the logits that argmax compares. Both are a tiny share of the network's work.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.to(self.weight.dtype))


def _replace_conv(parent: nn.Module, name: str, cls: type[nn.Conv2d]) -> nn.Conv2d:
    """Put a `cls` sharing the weights of ``parent.name`` (a plain Conv2d) in its place."""
    conv = cast(nn.Conv2d, parent._modules[name])
    new = _conv_like(conv, cls, bias=conv.bias is not None)
    new.weight = conv.weight
    new.bias = conv.bias
    setattr(parent, name, new)
    return new


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def pre_pad_depthwise(model: nn.Module) -> int:
    """Swap every dilated depthwise conv with zero padding for a `PrePaddedConv2d` (same weights), in place.

    Returns the number of convs swapped.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            if (
                type(conv) is nn.Conv2d
                and conv.groups > 1
                and conv.groups == conv.in_channels == conv.out_channels
                and conv.padding_mode == "zeros"
                and isinstance(conv.padding, tuple)
                and max(conv.padding) > 1
            ):
                _replace_conv(parent, name, PrePaddedConv2d)
                swapped += 1
    return swapped


def keep_ends_in_float32(model: nn.Module) -> list[str]:
    """Make the first conv and the classifier conv (``model.classifier.conv``) `Float32Conv2d`, in place.

    Returns the names of the convs changed.
    """
    changed = []
    first = next(((n, m) for n, m in model.named_modules() if type(m) is nn.Conv2d), None)
    targets = [first[0]] if first else []
    classifier = getattr(getattr(model, "classifier", None), "conv", None)
    if type(classifier) is nn.Conv2d:
        targets.append("classifier.conv")
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        _replace_conv(model.get_submodule(parent_name) if parent_name else model, child, Float32Conv2d)
        changed.append(name)
    return changed


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm layers left in `model` (0 after folding a model whose every BN follows a conv)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def optimize_for_inference(
    model: _ModuleT,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    inplace: bool = False,
    dtype: torch.dtype | str | None = None,
) -> _ModuleT:
    """An eval-mode copy of `model` that runs faster and computes the same logits (up to `FOLD_RTOL`).

    Args:
        model: a DeepLabV3+ model (or any module).
        fold_bn: fold BatchNorm into the preceding convolutions (`fold_batchnorm`).
        channels_last: store 4-D weights as channels_last (NHWC), the layout oneDNN and cuDNN are fastest with;
            inputs may stay NCHW (the first conv switches the layout) or be passed as channels_last.
        inplace: modify `model` itself instead of a copy.
        dtype: the precision the result runs in, recorded as ``result.inference_dtype`` (a DeepLabV3Plus then
            runs its eval-mode forwards under autocast in it): ``torch.bfloat16`` / ``torch.float16``, ``"auto"``
            for what the model's device runs natively (`deeplabv3p.inference.precision`: bf16 on CPUs with
            AVX512-BF16 or AMX and on GPUs with bf16, fp16 on other GPUs, float32 elsewhere; the choice is logged),
            or None / float32 for full precision. Move the model to its device first: "auto" looks at it.

    Dilated depthwise convs pad their input explicitly on the CPU (`PrePaddedConv2d`). For reduced precision run
    the result under ``torch.autocast`` (bf16 on CPU, fp16 or bf16 on GPU): the first conv and the classifier then
    still run in float32 (`Float32Conv2d`), so the image is not rounded before the first layer and the logits come
    out in float32; their cost is negligible.

    The result is for inference only: parameters no longer require gradients and the folded layers cannot be
    trained. Change the output stride (``set_output_stride``) before optimizing, not after.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, value in (("fold_bn", fold_bn), ("channels_last", channels_last), ("inplace", inplace)):
        check_bool(name, value)
    run_dtype = None
    if dtype is not None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        run_dtype = resolve_dtype(dtype, device)
        if not hasattr(model, "inference_dtype"):
            raise TypeError(
                f"dtype applies to deeplabv3p models (their forward honours inference_dtype); run a "
                f"{type(model).__name__} under torch.autocast instead"
            )
    optimized = model if inplace else copy.deepcopy(model)
    optimized.eval()
    if fold_bn:
        fold_batchnorm(optimized)
    pre_pad_depthwise(optimized)
    keep_ends_in_float32(optimized)
    optimized.requires_grad_(False)
    if channels_last:
        optimized.to(memory_format=torch.channels_last)
    if dtype is not None:
        cast(Any, optimized).inference_dtype = run_dtype or torch.float32
    return optimized
