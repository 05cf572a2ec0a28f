"""Command line: ``deeplabv3p <command>`` (also ``python -m deeplabv3p``).

Each command is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)`` does the work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .registry import list_models, list_pretrained
from .version import __version__


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list architectures or pretrained weights")
    p.add_argument("pattern", nargs="?", default="", help="shell-style filter, e.g. '*r101*' or '*ade20k*'")
    p.add_argument("--pretrained", action="store_true", help="list pretrained ARCH.TAG names instead")


def _run_list(args: argparse.Namespace) -> int:
    names = list_pretrained(args.pattern) if args.pretrained else list_models(args.pattern)
    print("\n".join(names))
    return 0 if names else 1


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "list": (_add_list, _run_list),
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
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"deeplabv3p {args.command}: error: {e}", file=sys.stderr)
        return 2
