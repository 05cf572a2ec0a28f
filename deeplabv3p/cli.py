"""Command line: ``deeplabv3p <command>`` (also ``python -m deeplabv3p``).

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)`` does the work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .download import sha256_file
from .factory import create_model
from .markdown import zoo_table
from .registry import get_pretrained_cfg, list_models, list_pretrained, split_model_name
from .version import __version__
from .weights import WeightsUnavailableError, load_into, read_state_dict


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list architectures or pretrained weights")
    p.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. '*r101*' or '*ade20k*'")
    p.add_argument("--pretrained", action="store_true", help="list pretrained ARCH.TAG names instead")
    p.add_argument(
        "--markdown", action="store_true", help="print the pretrained weights as the README's model-zoo table"
    )


def _run_list(args: argparse.Namespace) -> int:
    names = list_pretrained(args.pattern) if args.pretrained or args.markdown else list_models(args.pattern)
    if names:
        print(zoo_table(names) if args.markdown else "\n".join(names))
    return 0 if names else 1


def _add_convert(sub: argparse._SubParsersAction) -> None:
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


def _run_convert(args: argparse.Namespace) -> int:
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
    print(f"wrote {out}/ (config.json, model.safetensors, README.md) for {model.pretrained_cfg.name}")
    return 0


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "list": (_add_list, _run_list),
    "convert": (_add_convert, _run_convert),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeplabv3p", description="DeepLabV3+ semantic segmentation")
    parser.add_argument("--version", action="version", version=f"deeplabv3p {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, TypeError, OSError, WeightsUnavailableError) as e:
        print(f"deeplabv3p {args.command}: error: {e}", file=sys.stderr)
        return 2
