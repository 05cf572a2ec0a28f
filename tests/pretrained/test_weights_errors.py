"""Bad input gets a clear ValueError/TypeError that names what was wrong."""

from __future__ import annotations

import pytest
import torch
from nets import NARROW, narrow_model
from parity import PARITY, model_kwargs

import deeplabv3p
from deeplabv3p.pretrained.convert import convert_mmseg_state_dict
from deeplabv3p.pretrained.state_dict import load_into, read_state_dict


@pytest.fixture(scope="module")
def small():
    return narrow_model().eval()


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"deeplabv3plus_r50_d8"):
        deeplabv3p.create_model("deeplabv3plus_r50_d")


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"output_stride": 12}, ValueError, r"output_stride must be one of \[8, 16, 32\], got 12"),
        ({"num_classes": 0}, ValueError, r"num_classes must be an int in \[1, \d+\], got 0"),
        ({"num_classes": "3"}, TypeError, r"num_classes must be an int"),
        ({"in_chans": 0}, ValueError, r"in_chans must be an int in \[1, \d+\]"),
        ({"dropout": 1.5}, ValueError, r"dropout"),
        ({"dilation_policy": "paper"}, ValueError, r"dilation_policy must be one of \['timm', 'mmseg'\]"),
        ({"colour": "red"}, TypeError, r"unknown argument\(s\) \['colour'\]"),
        (
            {"multi_grid": (1, 2, 4)},
            ValueError,
            r"multi_grid \(1, 2, 4\) must have one dilation per block.*\(2 blocks\)",
        ),
    ],
)
def test_invalid_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        narrow_model(**kwargs)


def test_encoder_that_cannot_dilate_names_supported_strides():
    with pytest.raises(ValueError, match=r"cannot give output_stride=8.*supports: \[32\]"):
        deeplabv3p.create_model("deeplabv3plus", encoder="densenet121", output_stride=8)


def test_unknown_encoder():
    with pytest.raises(ValueError, match=r"encoder='resnet5000' is not a timm model"):
        deeplabv3p.create_model("deeplabv3plus", encoder="resnet5000")


def test_mmseg_policy_needs_a_resnet():
    with pytest.raises(ValueError, match=r"needs a timm ResNet"):
        deeplabv3p.create_model("deeplabv3plus", encoder="convnext_atto", dilation_policy="mmseg", output_stride=8)


@pytest.mark.parametrize(
    ("x", "exc", "pattern"),
    [
        (torch.randn(3, 64, 64), ValueError, r"shape \(N, C, H, W\), got \(3, 64, 64\)"),
        (torch.randn(1, 4, 64, 64), ValueError, r"4 channels but the model expects in_chans=3"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, r"floating-point.*torch.uint8"),
        (torch.randn(1, 3, 7, 64), ValueError, r"7x64 \(height x width\) but the model needs at least 8x8"),
        ([[1.0]], TypeError, r"must be a torch.Tensor"),
    ],
)
def test_bad_forward_input(small, x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        small(x)


def test_training_batch_of_one(small):
    small.train()
    try:
        with pytest.raises(ValueError, match=r"batch of at least 2"):
            small(torch.randn(1, 3, 32, 32))
    finally:
        small.eval()


def test_set_output_stride_rejects_bad_value(small):
    with pytest.raises(ValueError, match=r"output_stride must be one of"):
        small.set_output_stride(4)


def test_checkpoint_of_another_architecture_lists_offending_keys():
    _, kwargs = model_kwargs("r18_v1c_d8")
    kwargs["encoder_kwargs"] = NARROW["encoder_kwargs"]  # 7x7 stem; the checkpoint has the deep stem
    model = deeplabv3p.create_model("deeplabv3plus_r18b_d8", **kwargs)
    with pytest.raises(
        ValueError, match=r"(?s)missing from the checkpoint.*encoder\.body\.conv1\.weight.*not in the model"
    ):
        load_into(model, read_state_dict(PARITY / "r18_v1c_d8.safetensors"))


def test_unmapped_mmseg_keys_are_listed():
    with pytest.raises(ValueError, match=r"decode_head\.mystery\.weight"):
        convert_mmseg_state_dict(
            {"decode_head.mystery.weight": torch.zeros(1), "backbone.conv1.weight": torch.zeros(1)}
        )


def test_missing_checkpoint_file():
    with pytest.raises(FileNotFoundError, match=r"nowhere/model\.pth"):
        deeplabv3p.create_model("deeplabv3plus_r18_d8", pretrained="nowhere/model.pth")


def test_checkpoint_needing_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": Evil()}}, path)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        read_state_dict(path)


def test_unsupported_checkpoint_suffix(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"expected \.safetensors"):
        read_state_dict(path)


def test_batch_of_one_is_left_to_sync_batchnorm():
    """With SyncBatchNorm the statistics pool across processes, so a per-process batch of 1 is not refused here."""
    model = narrow_model()
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).train()
    # Outside a process group torch itself refuses; inside one (torchrun) the batch is pooled across ranks.
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel"):
        model(torch.randn(1, 3, 32, 32))
