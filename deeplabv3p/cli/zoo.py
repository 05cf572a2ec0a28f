"""``deeplabv3p list`` and ``deeplabv3p convert``: the zoo's names, and mmseg checkpoints turned into model folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..pretrained.download import sha256_file
from ..pretrained.factory import create_model
from ..pretrained.model_card import zoo_table
from ..pretrained.registry import get_pretrained_cfg, list_models, list_pretrained, split_model_name
from ..pretrained.weights import load_into, read_state_dict


def add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list architectures or pretrained weights")
    p.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. '*r101*' or '*ade20k*'")
    p.add_argument("--pretrained", action="store_true", help="list pretrained ARCH.TAG names instead")
    p.add_argument(
        "--markdown", action="store_true", help="print the pretrained weights as the README's model-zoo table"
    )


def run_list(args: argparse.Namespace) -> int:
    names = list_pretrained(args.pattern) if args.pretrained or args.markdown else list_models(args.pattern)
    if names:
        print(zoo_table(names) if args.markdown else "\n".join(names))
    return 0 if names else 1


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an mmseg DeepLabV3+ checkpoint into a Hub-ready folder",
        description="Convert an mmseg DeepLabV3+ checkpoint (.pth) into a folder with config.json, "
        "model.safetensors and a README.md model card, loadable with create_model(FOLDER) and ready to upload.",
    )
    p.add_argument("checkpoint", help="the mmseg checkpoint (.pth), or a .safetensors in either key layout")
    p.add_argument(
        "--model",
        required=True,
        help="ARCH.TAG whose metadata describes the weights (deeplabv3p list --pretrained), or ARCH for a "
        "checkpoint of your own (the class count is read from the checkpoint)",
    )
    p.add_argument("--out", required=True, help="output folder (created; files of the same names are replaced)")


def run_convert(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    state_dict = read_state_dict(checkpoint)
    arch, tag = split_model_name(args.model)
    if tag is not None:
        expected = get_pretrained_cfg(args.model).sha256_prefix
        if expected and not sha256_file(checkpoint).startswith(expected):
            print(
                f"deeplabv3p convert: warning: the sha256 of {checkpoint} does not start with {expected}, the "
                f"published file of {args.model}: the metadata (metrics) may not describe these weights",
                file=sys.stderr,
            )
        model = create_model(args.model)
    else:
        if "classifier.conv.weight" not in state_dict:
            raise ValueError(f"{checkpoint} has no classifier weights (decode_head.conv_seg): is it a DeepLabV3+?")
        model = create_model(arch, num_classes=int(state_dict["classifier.conv.weight"].shape[0]))
    report = load_into(model, state_dict)
    if report.reinitialized:
        raise ValueError(
            f"{checkpoint} has another class count than {args.model} ({model.num_classes}): pass the matching "
            "tag, or the bare architecture to take the class count from the checkpoint"
        )
    out = model.eval().save_pretrained(args.out)
    assert model.pretrained_cfg is not None  # create_model always sets it
    print(f"wrote {out}/ (config.json, model.safetensors, README.md) for {model.pretrained_cfg.name}")
    return 0
