"""Command line: ``deeplabv3p <command>`` (also ``python -m deeplabv3p``).

Each command is a pair in its module: ``add_<name>(subparsers, help)`` declares its arguments and
``run_<name>(args)`` does the work. Only the named command's module is imported (`COMMANDS` holds the rest as
a one-line summary), so ``deeplabv3p --help`` and ``deeplabv3p list`` answer without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..spelling import command_flags, command_line
from ..version import __version__
from .flags import parse_model_kwargs

__all__ = ["build_parser", "main", "parse_model_kwargs"]


class Command(NamedTuple):
    """A command: the module under deeplabv3p.cli holding ``add_<name>`` / ``run_<name>``, and its summary."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "list": Command("zoo", "list architectures or pretrained weights"),
    "convert": Command("zoo", "convert mmseg DeepLabV3+ checkpoints into Hub-ready folders, or publish the whole zoo"),
    "predict": Command("predict", "segment images and write label maps (and overlays)"),
    "train": Command("train", "fine-tune on a dataset folder (runs under torchrun for multi-GPU)"),
    "evaluate": Command("train", "mIoU/mAcc/aAcc of a model on a dataset split, as mmseg computes them"),
    "prepare": Command("prepare", "convert an official download (ISPRS tiles, iSAID, LoveDA, Cityscapes trainIds)"),
    "demo": Command("train", "offline demo: synthetic dataset, CPU fine-tuning, per-class IoU, overlays"),
    "export": Command("export", "export a model to ONNX (dynamic batch, height and width)"),
    "benchmark-backends": Command(
        "backends", "time PyTorch and every installed runtime on this machine; keep those that agree, pick the fastest"
    ),
}


def _function(name: str, kind: str) -> Callable[..., Any]:
    """``add_<name>`` or ``run_<name>`` of command `name` (importing its module)."""
    module = importlib.import_module(f".{COMMANDS[name].module}", __name__)
    return getattr(module, f"{kind}_{name.replace('-', '_')}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with `command` given, of that one (the others listed by name and summary
    only, without importing their modules)."""
    parser = argparse.ArgumentParser(prog="deeplabv3p", description="DeepLabV3+ semantic segmentation")
    parser.add_argument("--version", action="version", version=f"deeplabv3p {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        if command is None or name == command:
            _function(name, "add")(sub, cmd.help)
        else:
            sub.add_parser(name, help=cmd.help)
    return parser


def _errors() -> tuple[type[Exception], ...]:
    """The errors a command reports as one line (bad input, missing files or weights) rather than a traceback."""
    from ..pretrained.fetch import WeightsUnavailableError

    return (ValueError, TypeError, OSError, ImportError, FloatingPointError, WeightsUnavailableError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    named = next((a for a in argv if not a.startswith("-")), None)  # the top level takes no option values
    parser = build_parser(named if named in COMMANDS else "")
    args = parser.parse_args(argv)
    # the library's INFO logs (what dtype auto picked, adapted weights) go to stderr while the command runs
    logger = logging.getLogger("deeplabv3p")
    handler, level = logging.StreamHandler(sys.stderr), logger.level
    handler.setFormatter(logging.Formatter("deeplabv3p: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with command_line(command_flags(parser, args.command)):  # errors name this command's flags
            return _function(args.command, "run")(args)
    except Exception as e:
        if not isinstance(e, _errors()):
            raise
        print(f"deeplabv3p {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
