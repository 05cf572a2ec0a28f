"""``deeplabv3p prepare NAME RAW [OUT]``: official downloads converted into the layouts the readers (and mmseg) use."""

from __future__ import annotations

import argparse

from ..train.names import PREPARE_NAMES

_INPUTS = """inputs (RAW), as downloaded:
  potsdam    2_Ortho_RGB.zip and 5_Labels_all_noBoundary.zip
  vaihingen  ISPRS_semantic_labeling_Vaihingen.zip and
             ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip
  isaid      train/, val/, test/ with images/part*.zip and Semantic_masks/images.zip
  loveda     Train.zip, Val.zip, Test.zip
  cityscapes the folder holding gtFine/ (writes *_gtFine_labelTrainIds.png in place; optional, the reader maps
             *_gtFine_labelIds.png on the fly)
(the zips' contents unpacked into RAW work too)"""


def add_prepare(sub: argparse._SubParsersAction, help: str) -> None:
    p = sub.add_parser(
        "prepare", help=help,
        description="Converts the official download in RAW into mmseg's layout under OUT, as mmseg's dataset "
        "converters do (Potsdam/Vaihingen: 512x512 patches and the official train/val tiles; iSAID: 896x896 "
        "patches every 512 px). Checks the inputs first, writes every file atomically and skips the ones already "
        "there, so an interrupted run can simply be started again.",
        epilog=_INPUTS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("name", choices=PREPARE_NAMES, help="dataset to prepare")
    p.add_argument("raw", help="folder of the official download")
    p.add_argument("out", nargs="?", help="output folder (cityscapes: omit, it is prepared in place)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    from ..train.prepare import prepare

    report = prepare(args.name, args.raw, args.out, progress=not args.no_progress)
    print(f"prepared {args.name} in {report.out}:\n{report.summary()}")
    return 0
