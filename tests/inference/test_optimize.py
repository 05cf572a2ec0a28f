"""Inference fast paths (BN folding, channels_last, autocast, compile) against fp32 eager on non-trivial networks.

The networks carry mmseg's parity weights (random but well-conditioned, with non-trivial BatchNorm statistics). For
the reduced-precision checks the classifier bias is also centred on the test input (`balance_classes`), so that
every class wins somewhere and argmax agreement means something.
"""

from __future__ import annotations

import copy

import pytest
import torch
from nets import narrow_model, randomize_bn
from parity import arrays, build
from torch import nn

import deeplabv3p
from deeplabv3p.inference.optimize import (
    FOLD_RTOL,
    Float32Conv2d,
    PrePaddedConv2d,
    count_batchnorms,
    fold_batchnorm,
    fuse_conv_bn,
    optimize_for_inference,
    pre_pad_depthwise,
)

# Documented tolerance of bf16 autocast against fp32 (CPU and GPU), relative to the largest |logit|,
# and the argmax agreement it must keep on these networks.
BF16_RTOL = 5e-2
BF16_MIN_AGREEMENT = 0.97

PARITY_CASES = ("r50_v1c_d8", "r18_v1b_d8_slide", "r101_v1c_d16_mg124", "r18_v1c_d8")


def parity_model(case: str) -> tuple[deeplabv3p.DeepLabV3Plus, torch.Tensor, torch.Tensor]:
    """A narrow mmseg-architecture model with the parity case's weights, its input and mmseg's (whole) logits."""
    golden = arrays(case)
    return build(case), golden["input"], golden["logits_whole" if "logits_whole" in golden else "logits"]


def balance_classes(model: deeplabv3p.DeepLabV3Plus, x: torch.Tensor) -> torch.Tensor:
    """Set the classifier bias so every class logit averages zero over `x`; return the fp32 logits afterwards."""
    seen = []
    hook = model.classifier.conv.register_forward_hook(lambda m, inp, out: seen.append(inp[0].mean((0, 2, 3))))
    with torch.inference_mode():
        model(x)
    hook.remove()
    conv = model.classifier.conv
    with torch.no_grad():
        conv.bias.copy_(-conv.weight.flatten(1) @ seen[0])
        logits = model(x)
    shares = torch.bincount(logits.argmax(1).flatten(), minlength=model.num_classes) / logits.argmax(1).numel()
    assert shares.max() < 0.6 and (shares > 0.01).sum() >= 3, f"argmax map too uniform to test with: {shares}"
    return logits


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).double().mean().item()


@pytest.mark.parametrize("case", PARITY_CASES)
def test_folded_model_matches_mmseg_logits(case):
    model, x, expected = parity_model(case)
    n_bn = count_batchnorms(model)
    folded = optimize_for_inference(model)
    assert n_bn > 0 and count_batchnorms(folded) == 0, "every BatchNorm of the mmseg architectures follows a conv"
    assert count_batchnorms(model) == n_bn, "the original model is left untouched"
    with torch.inference_mode():
        got = folded(x)
    assert rel_diff(got, expected) <= FOLD_RTOL
    assert agreement(got, expected) >= 0.999


def test_fold_batchnorm_in_place_and_counts():
    model, x, _ = parity_model("r18_v1c_d8")
    with torch.inference_mode():
        before = model(x)
    n = fold_batchnorm(model)
    assert n == count_batchnorms(parity_model("r18_v1c_d8")[0])
    assert count_batchnorms(model) == 0
    with torch.inference_mode():
        assert rel_diff(model(x), before) <= FOLD_RTOL


def test_optimized_copy_is_inference_only_and_channels_last():
    model, x, _ = parity_model("r18_v1b_d8_slide")
    model.train()
    fast = model.optimize_for_inference()
    assert isinstance(fast, deeplabv3p.DeepLabV3Plus) and fast is not model
    assert not fast.training and model.training
    assert not any(p.requires_grad for p in fast.parameters())
    assert all(p.requires_grad for p in model.parameters())
    conv = fast.encoder.body.conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    model.eval()
    with torch.inference_mode():
        ref = model(x)
        # NCHW and channels_last inputs give the same logits.
        assert rel_diff(fast(x), ref) <= FOLD_RTOL
        assert rel_diff(fast(x.contiguous(memory_format=torch.channels_last)), ref) <= FOLD_RTOL


def test_optimize_options():
    model, _, _ = parity_model("r18_v1c_d8")
    plain = optimize_for_inference(model, fold_bn=False, channels_last=False)
    assert count_batchnorms(plain) == count_batchnorms(model)
    assert plain.encoder.body.conv1[0].weight.is_contiguous()
    same = optimize_for_inference(model, inplace=True)
    assert same is model and count_batchnorms(model) == 0


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_fuse_conv_bn_is_exact(bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=3, bias=bias)
    bn = nn.BatchNorm2d(6, affine=affine, eps=1e-3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.2, 3)
    if affine:
        nn.init.uniform_(bn.weight, -2, 2)
        nn.init.uniform_(bn.bias, -1, 1)
    bn.eval()
    fused = fuse_conv_bn(conv, bn)
    assert fused.dilation == (2, 2) and fused.groups == 3 and fused.bias is not None
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_untraced_patterns_stay_correct():
    """A timm encoder whose BNs sit outside the known patterns keeps them: same function, nothing broken."""
    model = narrow_model("deeplabv3plus", encoder="mobilenetv3_small_050", encoder_kwargs={}, num_classes=4)
    randomize_bn(model.eval())
    x = torch.randn(1, 3, 96, 96)
    fast = model.optimize_for_inference()
    assert 0 < count_batchnorms(fast) < count_batchnorms(model)
    with torch.inference_mode():
        assert rel_diff(fast(x), model(x)) <= FOLD_RTOL


def test_bad_arguments():
    model, _, _ = parity_model("r18_v1c_d8")
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        optimize_for_inference("model")
    with pytest.raises(TypeError, match="fold_bn"):
        optimize_for_inference(model, fold_bn="yes")
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(copy.deepcopy(model).train())
    bn = nn.BatchNorm2d(4, track_running_stats=False).eval()
    with pytest.raises(ValueError, match="running statistics"):
        fuse_conv_bn(nn.Conv2d(4, 4, 1), bn)


def test_input_dtype_mismatch_is_a_clear_error():
    model, x, _ = parity_model("r18_v1c_d8")
    with pytest.raises(TypeError, match=r"input dtype torch.bfloat16 differs from the model's torch.float32"):
        model(x.bfloat16())


def test_bf16_autocast_on_cpu():
    model, x, _ = parity_model("r50_v1c_d8")
    ref = balance_classes(model, x)
    fast = model.optimize_for_inference()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = fast(x)
    assert got.dtype == torch.float32, "the classifier runs in float32 under autocast"
    assert rel_diff(got, ref) <= BF16_RTOL
    assert agreement(got, ref) >= BF16_MIN_AGREEMENT


def test_grad_checkpointing_gives_the_same_gradients():
    model, x, _ = parity_model("r18_v1c_d8")
    x = torch.cat([x, x.flip(-1)])
    target = torch.randint(0, model.num_classes, (2, *x.shape[2:]))

    def grads(m: nn.Module) -> dict[str, torch.Tensor]:
        m.train()
        m.zero_grad()
        logits, aux = m(x, return_aux=True)
        loss = nn.functional.cross_entropy(logits, target) + 0.4 * nn.functional.cross_entropy(aux, target)
        loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters()}

    for m in model.modules():
        if isinstance(m, nn.Dropout2d):
            m.p = 0.0  # same forward twice
    plain = grads(copy.deepcopy(model))
    model.set_grad_checkpointing()
    assert model.grad_checkpointing and model.encoder.body.grad_checkpointing
    ckpt = grads(model)
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-4, atol=1e-5, msg=name)
    model.set_output_stride(16)
    assert model.encoder.body.grad_checkpointing, "a rebuilt trunk keeps checkpointing"
    model.set_grad_checkpointing(False)
    assert not model.grad_checkpointing and not model.encoder.body.grad_checkpointing


@pytest.mark.slow
def test_compiled_optimized_model_matches():
    model, x, _ = parity_model("r18_v1c_d8")
    compiled = torch.compile(model.optimize_for_inference())
    with torch.inference_mode():
        ref = model(x)
        got = compiled(x)
    assert rel_diff(got, ref) <= FOLD_RTOL


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_on_gpu(dtype):
    model, x, _ = parity_model("r50_v1c_d8")
    balance_classes(model, x)
    model, x = model.cuda(), x.cuda()
    fast = model.optimize_for_inference()
    with torch.inference_mode():
        ref = model(x)
        assert rel_diff(fast(x), ref) <= FOLD_RTOL * 10  # TF32 may be on for convolutions
        with torch.autocast("cuda", dtype=dtype):
            got = fast(x)
    assert rel_diff(got, ref) <= BF16_RTOL
    assert agreement(got, ref) >= BF16_MIN_AGREEMENT


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pre_padded_depthwise_conv_is_the_same_function(channels_last, dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=12, dilation=12, groups=16, bias=True).to(dtype)
    parent = nn.Sequential(conv)
    assert pre_pad_depthwise(parent) == 1
    padded = parent[0]
    assert isinstance(padded, PrePaddedConv2d) and padded.weight is conv.weight
    x = torch.randn(2, 16, 21, 30, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = padded(x)
        assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(got, conv(x))


def test_pre_padding_leaves_other_convs_alone():
    model, _, _ = parity_model("r50_v1c_d8")
    fast = model.optimize_for_inference()
    swapped = [name for name, m in fast.named_modules() if isinstance(m, PrePaddedConv2d)]
    # Exactly the three dilated depthwise ASPP branches (rates 12, 24, 36 at output stride 8).
    assert swapped == [f"decoder.aspp.branches.{i}.depthwise.conv" for i in (1, 2, 3)]
    assert [fast.get_submodule(n).dilation for n in swapped] == [(12, 12), (24, 24), (36, 36)]


def test_first_conv_and_classifier_stay_float32_under_autocast():
    model, x, _ = parity_model("r50_v1c_d8")
    fast = model.optimize_for_inference()
    kept = [name for name, m in fast.named_modules() if isinstance(m, Float32Conv2d)]
    assert kept == ["encoder.body.conv1.0", "classifier.conv"]
    seen = {}
    for name in kept:
        fast.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    others = []
    fast.encoder.body.conv1[3].register_forward_hook(lambda m, i, o: others.append(o.dtype))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast(x)
    assert seen == {"encoder.body.conv1.0": torch.float32, "classifier.conv": torch.float32}
    assert others == [torch.bfloat16], "the rest of the network runs in bf16"


@pytest.mark.gpu
@cuda
def test_compiled_path_on_gpu():
    """torch.compile (Inductor, Triton kernels) of the optimized model under fp16 autocast on a channels_last input,
    as the GPU benchmark times it (one compilation: the fp32 graph is checked on the CPU, in the slow tests)."""
    model, x, _ = parity_model("r50_v1c_d8")
    balance_classes(model, x)
    model, x = model.cuda(), x.cuda()
    compiled = torch.compile(model.optimize_for_inference(dtype=torch.float16))
    with torch.inference_mode():
        ref = model(x)
        got = compiled(x.contiguous(memory_format=torch.channels_last))
    assert got.is_cuda and got.dtype == torch.float32 and rel_diff(got, ref) <= BF16_RTOL
    assert agreement(got, ref) >= BF16_MIN_AGREEMENT


@pytest.mark.gpu
@cuda
def test_auto_dtype_on_gpu():
    """dtype="auto" on a GPU: bf16 from compute capability 8.0, fp16 before; the optimized model and predict agree
    with fp32 as the explicit dtype does."""
    model, x, _ = parity_model("r50_v1c_d8")
    balance_classes(model, x)
    model, x = model.cuda(), x.cuda()
    expected = torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16
    fast = model.optimize_for_inference(dtype="auto")
    assert fast.inference_dtype == expected
    with torch.inference_mode():
        ref = model(x)
        got = fast(x)
        with torch.autocast("cuda", dtype=expected):
            explicit = model.optimize_for_inference()(x)
    assert got.dtype == torch.float32 and rel_diff(got, ref) <= BF16_RTOL
    assert agreement(got, ref) >= BF16_MIN_AGREEMENT
    assert rel_diff(got, explicit) <= 1e-3  # auto is that explicit autocast (fp16 and bf16 differ by ~1e-2)
    image = (x[0].cpu() * 58 + 116).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    auto = model.predict(image, dtype="auto", return_probs=True)
    same = model.predict(image, dtype=expected, return_probs=True)
    assert (auto.labels == same.labels).all()
