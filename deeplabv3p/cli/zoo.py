"""``deeplabv3p list`` and ``deeplabv3p convert``: the zoo's names, and mmseg checkpoints turned into model folders
(one, or the whole zoo, pushed to the Hub)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from ..pretrained.model_card import zoo_table
from ..pretrained.registry import get_pretrained_cfg, list_models, list_pretrained, split_model_name


def add_list(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser("list", help=help)
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


def add_convert(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "convert",
        help=help,
        description="Convert an mmseg DeepLabV3+ checkpoint (.pth) into a folder with config.json, "
        "model.safetensors and a README.md model card, loadable with create_model(FOLDER) and ready to upload. "
        "With --all, every tag whose original checkpoint is in --from (under its published file name, "
        "sha256-checked) is converted to OUT/ARCH.TAG and/or pushed to the Hub repo ORG/ARCH.TAG; a repo that "
        "already holds the same files is skipped, so an interrupted run can simply be run again.",
    )
    p.add_argument("checkpoint", nargs="?", help="the mmseg checkpoint (.pth), or a .safetensors in either key layout")
    p.add_argument(
        "--model",
        help="ARCH.TAG whose metadata describes the weights (deeplabv3p list --pretrained), or ARCH for a "
        "checkpoint of your own (the class count is read from the checkpoint)",
    )
    p.add_argument("--out", help="output folder (created; a model folder there is replaced); with --all, the "
                   "folder that receives one ARCH.TAG folder per tag")  # fmt: skip
    p.add_argument(
        "--overwrite", action="store_true", help="also write into a non-empty folder that is not a model folder"
    )
    p.add_argument("--all", action="store_true", help="convert every zoo tag whose checkpoint is in --from")
    p.add_argument("--from", dest="source", metavar="DIR", help="with --all: folder of original mmseg checkpoints")
    p.add_argument("--push-to-hub", metavar="ORG", help="with --all: push each tag to the Hub repo ORG/ARCH.TAG")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repos private")


def run_convert(args: argparse.Namespace) -> int:
    from ..pretrained.download import ChecksumError
    from ..pretrained.publish import model_from_checkpoint, verify_checkpoint
    from ..pretrained.saved import save_pretrained

    if args.all:
        return _convert_all(args)
    if args.checkpoint is None or args.model is None or args.out is None:
        raise ValueError(
            "convert needs CHECKPOINT --model NAME --out FOLDER, or --all --from DIR with --out and/or --push-to-hub"
        )
    if args.source or args.push_to_hub:
        raise ValueError("--from and --push-to-hub go with --all")
    checkpoint = Path(args.checkpoint)
    if split_model_name(args.model)[1] is not None:
        try:
            verify_checkpoint(checkpoint, get_pretrained_cfg(args.model))
        except ChecksumError as e:
            print(f"deeplabv3p convert: warning: {e}", file=sys.stderr)
    model = model_from_checkpoint(checkpoint, args.model)
    out = save_pretrained(model, args.out, overwrite=args.overwrite)
    assert model.pretrained_cfg is not None  # create_model always sets it
    print(f"wrote {out}/ (config.json, model.safetensors, README.md) for {model.pretrained_cfg.name}")
    return 0


def _convert_all(args: argparse.Namespace) -> int:
    from ..pretrained.publish import hub_org_note, publish_zoo

    if args.checkpoint is not None or args.model is not None:
        raise ValueError("--all converts the zoo's tags: give --from DIR instead of a checkpoint and --model")
    if args.source is None or (args.out is None and args.push_to_hub is None):
        raise ValueError("--all needs --from DIR, and --out FOLDER and/or --push-to-hub ORG")
    results = publish_zoo(
        args.source,
        org=args.push_to_hub,
        out=args.out,
        overwrite=args.overwrite,
        private=True if args.private else None,
        log=print,
    )
    counts = Counter(r.status for r in results)
    missing = len(list_pretrained()) - len(results)
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f"; {missing} tags not in {args.source}")
    if args.push_to_hub and (note := hub_org_note(args.push_to_hub)):
        print(f"note: {note}")
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        print(f"deeplabv3p convert: {r.name} failed: {r.detail}", file=sys.stderr)
    return 1 if failed else 0
