"""Command-line flags made from dataclass fields: predict from PredictOptions, train from TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from deeplabv3p import PredictOptions
from deeplabv3p.cli import build_parser
from deeplabv3p.cli.flags import add_options, option_values
from deeplabv3p.fields import flat_fields
from deeplabv3p.pretrained.test_settings import TestSettings
from deeplabv3p.train import TrainConfig


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions}


@pytest.mark.parametrize(("command", "cls"), [("predict", PredictOptions), ("train", TrainConfig)])
def test_every_field_has_its_flag_with_help_and_default(command, cls):
    flags = _flags(_subparser(command))
    for name, (_, f) in flat_fields(cls).items():  # a sub-record's fields by their flat names (TrainConfig.test)
        if not f.metadata.get("cli", True):
            assert name not in flags
            continue
        action = flags[name]
        assert "--" + name.replace("_", "-") in action.option_strings
        assert action.help.startswith(f.metadata["help"])
        if f.default not in (None, dataclasses.MISSING) and "(default" not in f.metadata["help"]:
            shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default)
            assert action.help.endswith(f"(default: {shown})")


def test_predict_flags_build_the_options():
    parser = argparse.ArgumentParser()
    add_options(parser, PredictOptions)
    assert option_values(parser.parse_args([]), PredictOptions) == {}  # unset flags keep the dataclass defaults
    flags = "--mode slide --crop-size 48 --stride 32 40 --no-resize --tta --tta-ratios 0.5 1 --no-tta-flip "
    args = parser.parse_args([*flags.split(), "--dtype", "bfloat16", "--channels-last", "--window-batch-size", "2"])
    options = PredictOptions(**option_values(args, PredictOptions))
    assert options == PredictOptions(
        mode="slide", crop_size=48, stride=(32, 40), resize=False, tta=True, tta_ratios=(0.5, 1.0),
        tta_flip=False, dtype="bfloat16", channels_last=True, window_batch_size=2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="--crop-size takes H or H W"):
        option_values(parser.parse_args(["--crop-size", "1", "2", "3"]), PredictOptions)
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "sliding"])


def test_train_flags_build_the_config():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    flags = "--iters 7 --crop-size 48 64 --scale 2048 512 --class-weight 1 0.5 --amp bf16 --no-sync-bn"
    args = parser.parse_args([*flags.split(), "--no-photometric", "--freeze-encoder", "--ratio-range", "0.75", "1.5",
                              "--ohem-min-kept", "100"])  # fmt: skip
    values = option_values(args, TrainConfig)
    config = TrainConfig().replace(**values)
    assert config == TrainConfig().replace(
        iters=7, crop_size=(48, 64), scale=(2048, 512), class_weight=(1.0, 0.5), amp="bf16", sync_bn=False,
        photometric=False, freeze_encoder=True, ratio_range=(0.75, 1.5), ohem_min_kept=100,
    )  # fmt: skip
    assert set(values) == {"iters", "crop_size", "scale", "class_weight", "amp", "sync_bn", "photometric",
                           "freeze_encoder", "ratio_range", "ohem_min_kept"}  # fmt: skip


def test_train_test_setting_flags_keep_their_flat_names():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    flags = ["--test-mode", "slide", "--slide-crop", "64", "48", "--test-scale", "2048", "512", "--no-tta-flip"]
    args = parser.parse_args(flags)
    values = option_values(args, TrainConfig)
    assert values == {"test_mode": "slide", "slide_crop": (64, 48), "test_scale": (2048, 512), "tta_flip": False}
    config = TrainConfig().replace(**values)
    assert config.test == TestSettings(
        mode="slide", window=(64, 48), stride=(43, 32), scale=(2048, 512), tta_flip=False
    )
    assert "test" not in _flags(parser)  # the record itself has no flag: its fields do


def test_a_field_without_a_command_line_form_is_refused():
    @dataclasses.dataclass
    class Odd:
        table: dict = dataclasses.field(default_factory=dict, metadata={"help": "a dict"})

    with pytest.raises(TypeError, match=r"'table'.*cli=False"):
        add_options(argparse.ArgumentParser(), Odd)
