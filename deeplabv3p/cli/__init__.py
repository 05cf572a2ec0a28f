"""Command line: ``deeplabv3p <command>`` (also ``python -m deeplabv3p``).

Each command is a pair in its module: ``add_<name>(subparsers)`` declares its arguments and ``run_<name>(args)``
does the work. The training commands import the training package only when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..pretrained.fetch import WeightsUnavailableError
from ..spelling import command_flags, command_line
from ..version import __version__
from .common import parse_model_kwargs
from .export import add_export, run_export
from .predict import add_predict, run_predict
from .prepare import add_prepare, run_prepare
from .train import add_demo, add_evaluate, add_train, run_demo, run_evaluate, run_train
from .zoo import add_convert, add_list, run_convert, run_list

__all__ = ["build_parser", "main", "parse_model_kwargs"]

COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "list": (add_list, run_list),
    "convert": (add_convert, run_convert),
    "predict": (add_predict, run_predict),
    "train": (add_train, run_train),
    "evaluate": (add_evaluate, run_evaluate),
    "prepare": (add_prepare, run_prepare),
    "demo": (add_demo, run_demo),
    "export": (add_export, run_export),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeplabv3p", description="DeepLabV3+ semantic segmentation")
    parser.add_argument("--version", action="version", version=f"deeplabv3p {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with command_line(command_flags(parser, args.command)):  # errors name this command's flags
            return COMMANDS[args.command][1](args)
    except (ValueError, TypeError, OSError, ImportError, FloatingPointError, WeightsUnavailableError) as e:
        print(f"deeplabv3p {args.command}: error: {e}", file=sys.stderr)
        return 2
