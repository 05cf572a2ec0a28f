"""Architecture: every registered model builds and runs, shapes, strides, gradients, output-stride switching."""

from __future__ import annotations

import json

import pytest
import torch
from nets import NARROW, narrow_model, randomize_bn
from timm.models.resnet import BasicBlock

import deeplabv3p
from deeplabv3p.models.config import ModelConfig
from deeplabv3p.models.encoder import TESTED_FAMILIES
from deeplabv3p.models.model import DeepLabV3PlusNetwork as DeepLabV3Plus

# Reference counts for K=19 (mmseg_deeplabv3plus.md section 9): backbone, decode head, aux head parameters.
REFERENCE_PARAMS = {
    "deeplabv3plus_r18_d8": (11_195_744, 1_124_399, 148_819),
    "deeplabv3plus_r18b_d8": (11_176_512, 1_124_399, 148_819),
    "deeplabv3plus_r50_d8": (23_527_264, 17_697_923, 2_364_691),
    "deeplabv3plus_r50b_d8": (23_508_032, 17_697_923, 2_364_691),
    "deeplabv3plus_r101_d8": (42_519_392, 17_697_923, 2_364_691),
    "deeplabv3plus_r101_d16_mg124": (42_519_392, 17_697_923, 2_364_691),
    "deeplabv3plus_r101b_d8": (42_500_160, 17_697_923, 2_364_691),
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_lists_the_seven_architectures_and_generic():
    assert set(deeplabv3p.list_models()) == set(REFERENCE_PARAMS) | {"deeplabv3plus"}
    assert deeplabv3p.list_models("*r101*") == [
        "deeplabv3plus_r101_d8",
        "deeplabv3plus_r101_d16_mg124",
        "deeplabv3plus_r101b_d8",
    ]


@pytest.mark.parametrize("arch", sorted(REFERENCE_PARAMS))
def test_full_width_architecture_matches_mmseg_sizes_and_runs(arch):
    model = deeplabv3p.create_model(arch, num_classes=19).eval()
    backbone, decode, aux = REFERENCE_PARAMS[arch]
    assert _count(model.encoder) == backbone
    assert _count(model.decoder) + _count(model.classifier) == decode
    assert _count(model.aux_head) == aux
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 35, 45))
    assert out.shape == (1, 19, 35, 45)


@pytest.mark.parametrize("arch", sorted(REFERENCE_PARAMS))
def test_mmseg_block_dilations(arch):
    """Per-block dilations of the 3x3 convs follow mmseg (section 6 of the reference notes)."""
    model = narrow_model(arch, num_classes=None)
    body = model.encoder.body
    cfg = model.config

    def dilations(stage):
        convs = [b.conv1 if isinstance(b, BasicBlock) else b.conv2 for b in stage]
        return [c.dilation[0] for c in convs]

    n3, n4 = len(body.layer3), len(body.layer4)
    if cfg.output_stride == 8:
        assert dilations(body.layer3) == [1] + [2] * (n3 - 1)
        assert dilations(body.layer4) == [2] + [4] * (n4 - 1)
    else:
        assert dilations(body.layer3) == [1] * n3
        assert dilations(body.layer4) == [1, 2, 4]
    for block in [*body.layer1, *body.layer2, *body.layer3, *body.layer4]:
        conv = block.conv1 if isinstance(block, BasicBlock) else block.conv2
        assert conv.padding == conv.dilation
        if isinstance(block, BasicBlock):
            assert block.conv2.dilation == (1, 1) and block.conv2.padding == (1, 1)


@pytest.mark.parametrize("size", [(64, 64), (65, 97), (33, 127), (8, 8)])
def test_output_has_input_size(size):
    model = narrow_model().eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)


# A small timm encoder of each family the library says works (deeplabv3p.models.encoder.TESTED_FAMILIES).
FAMILY_EXAMPLES = {
    "ResNet/ResNet-D": "resnet18d",
    "ConvNeXt": "convnext_atto",
    "EfficientNet": "efficientnet_b0",
    "RegNet": "regnetx_002",
    "MobileNetV3": "mobilenetv3_small_050",
}


def test_the_families_the_library_names_are_the_tested_ones():
    assert tuple(FAMILY_EXAMPLES) == TESTED_FAMILIES


def test_a_plain_vit_is_refused_saying_why_and_what_works():
    pattern = r"'vit_tiny_patch16_224' gives features at reductions \[16, 16, 16\] only"
    with pytest.raises(ValueError, match=pattern) as e:
        deeplabv3p.create_model("deeplabv3plus", encoder="vit_tiny_patch16_224", encoder_kwargs={}, num_classes=3)
    assert "needs a stride-4 feature" in str(e.value) and "tested families: ResNet/ResNet-D, ConvNeXt" in str(e.value)


@pytest.mark.parametrize("encoder", list(FAMILY_EXAMPLES.values()))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_timm_encoders_give_promised_reductions(encoder, output_stride):
    model = narrow_model("deeplabv3plus", encoder=encoder, encoder_kwargs={}, output_stride=output_stride).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        features = model.forward_features(x)
        out = model(x)
    assert out.shape == (1, 3, 64, 96)
    assert model.encoder.reductions[0] == 4 and model.encoder.reductions[-1] == output_stride
    for feature, reduction, channels in zip(features, model.encoder.reductions, model.encoder.channels, strict=True):
        assert feature.shape[1] == channels
        assert feature.shape[2:] == (64 // reduction, 96 // reduction)


def test_backward_reaches_every_parameter():
    model = narrow_model().train()
    for m in model.modules():  # timm zero-initialises each block's last BN, which blocks gradients at init
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    logits, aux = model(torch.randn(2, 3, 48, 64), return_aux=True)
    assert aux is not None and aux.shape == logits.shape == (2, 3, 48, 64)
    (logits.square().mean() + aux.square().mean()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_return_aux_without_aux_head_gives_none():
    model = narrow_model("deeplabv3plus", encoder="resnet18", num_classes=2).eval()
    assert model.aux_head is None
    logits, aux = model(torch.randn(1, 3, 32, 32), return_aux=True)
    assert aux is None and logits.shape == (1, 2, 32, 32)


@pytest.mark.parametrize(
    ("arch", "extra"),
    [("deeplabv3plus_r18_d8", {}), ("deeplabv3plus", {"encoder": "convnext_atto", "encoder_kwargs": {}})],
)
def test_set_output_stride_matches_a_fresh_model(arch, extra):
    model = randomize_bn(narrow_model(arch, output_stride=16, **extra).eval())
    x = torch.randn(1, 3, 64, 80)
    with torch.inference_mode():
        at16 = model(x)
        model.set_output_stride(8)
        at8 = model(x)
    fresh = DeepLabV3Plus(model.config).eval()
    assert fresh.config.output_stride == 8
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        assert torch.allclose(fresh(x), at8, atol=1e-5)
        model.set_output_stride(16)
        assert torch.allclose(model(x), at16, atol=1e-5)
    assert not torch.equal(at8, at16)  # the stride really changed the computation
    assert model.decoder.aspp.rates == (1, 6, 12, 18)


def test_set_output_stride_keeps_frozen_encoder_and_mode():
    model = narrow_model()
    model.freeze_encoder()
    model.train()
    model.set_output_stride(16)
    assert model.training and model.encoder.body.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert model.config.output_stride == 16 and model.encoder.reductions[-1] == 16


def test_in_chans():
    model = narrow_model(in_chans=4).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 4, 40, 40)).shape == (1, 3, 40, 40)


def test_config_json_round_trip():
    cfg = deeplabv3p.pretrained.get_model_config("deeplabv3plus_r101_d16_mg124")
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert DeepLabV3Plus(again.replace(**NARROW)).config.multi_grid == (1, 2, 4)


def test_reset_classifier():
    model = narrow_model().eval()
    model.reset_classifier(7)
    assert model.num_classes == 7 and model.aux_head.classifier.conv.out_channels == 7
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7, 32, 32)
