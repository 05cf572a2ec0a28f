"""Converted mmseg weights reproduce mmseg's own outputs (goldens made by mmsegmentation 1.2.2)."""

from __future__ import annotations

import pytest
import torch
from parity import CASES, PARITY, arrays, build, case_info, model_kwargs, rel_err

import deeplabv3p
from deeplabv3p.pretrained.state_dict import load_into, read_state_dict

TOL = 1e-5


@pytest.mark.parametrize("name", CASES)
def test_features_and_logits_match_mmseg(name):
    model = build(name)
    golden = arrays(name)
    with torch.inference_mode():
        features = model.forward_features(golden["input"])
        assert len(features) == 4
        for i, feature in enumerate(features):
            assert rel_err(feature, golden[f"feature{i}"]) < TOL, f"feature{i}"
        decode = model.classifier(model.decoder(features[0], features[-1]))
        assert rel_err(decode, golden["decode_logits_stride4"]) < TOL
        assert rel_err(model.aux_head(features[-2]), golden["aux_logits"]) < TOL
        logits = model(golden["input"])
    whole = golden["logits_whole"] if "logits_whole" in golden else golden["logits"]
    assert rel_err(logits, whole) < TOL
    assert torch.equal(logits.argmax(1), whole.argmax(1))


def test_pth_checkpoint_loads_through_create_model():
    """The mmseg container ({'meta', 'state_dict'}) loads with weights_only and gives the golden outputs."""
    arch, kwargs = model_kwargs("r50_v1c_d8")
    model = deeplabv3p.create_model(arch, pretrained=str(PARITY / "r50_v1c_d8.pth"), **kwargs).eval()
    golden = arrays("r50_v1c_d8")
    with torch.inference_mode():
        assert rel_err(model(golden["input"]), golden["logits"]) < TOL


def test_fp16_checkpoint_is_cast_to_fp32(tmp_path):
    from safetensors.torch import load_file

    sd = load_file(str(PARITY / "r18_v1c_d8.safetensors"))
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path / "half.pth"
    torch.save({"meta": {}, "state_dict": half}, path)
    model = build("r18_v1c_d8", checkpoint=path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    golden = arrays("r18_v1c_d8")
    with torch.inference_mode():
        # fp16 rounding of the weights only: outputs stay close to the fp32 golden
        assert rel_err(model(golden["input"]), golden["logits"]) < 5e-2


def test_mmseg_dilation_policy_is_what_makes_parity():
    """timm's own dilation differs from mmseg's on BasicBlock nets: the policy is load-bearing."""
    arch, kwargs = model_kwargs("r18_v1c_d8")
    model = deeplabv3p.create_model(arch, dilation_policy="timm", **kwargs).eval()
    load_into(model, read_state_dict(PARITY / "r18_v1c_d8.safetensors"))
    golden = arrays("r18_v1c_d8")
    with torch.inference_mode():
        assert rel_err(model(golden["input"]), golden["logits"]) > 1e-3


def test_golden_settings_are_what_the_cases_say():
    info = case_info("r101_v1c_d16_mg124")
    arch, _ = model_kwargs("r101_v1c_d16_mg124")
    cfg = deeplabv3p.pretrained.get_model_config(arch)
    assert (cfg.output_stride, cfg.multi_grid) == (info["output_stride"], tuple(info["multi_grid"]))
    assert cfg.resolved_aspp_rates() == tuple(info["mmseg_model_cfg"]["decode_head"]["dilations"])
