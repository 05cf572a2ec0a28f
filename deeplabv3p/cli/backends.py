"""``deeplabv3p benchmark-backends``: time PyTorch and every installed runtime on this machine for one model and
input size, keep those that segment as PyTorch fp32 does, and print the table (`deeplabv3p.deploy.fastest`)."""

from __future__ import annotations

import argparse

from ..deploy.backend_names import runnable_formats
from .flags import parse_model_kwargs, parse_size


def _format_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_benchmark_backends(sub: argparse._SubParsersAction, help: str) -> None:
    formats = ", ".join(f.name for f in runnable_formats())
    p = sub.add_parser(
        "benchmark-backends",
        help=help,
        description="Time the model at one input size under PyTorch (fp32 eager, BatchNorm folded, and bf16 where "
        "the CPU computes it natively) and under every installed runtime it can be exported to (exported into the "
        "cache folder), compare each with PyTorch fp32 at that size and a second one, keep those within the "
        "documented bound (>= 99.9% labels equal, logits within 1e-3) and print which is fastest. The decision is "
        "cached per machine, thread count, model and size: predict --backend auto uses it.",
    )
    p.add_argument(
        "model",
        help="a saved model folder, hf-hub:ORG/NAME, ARCH.TAG, or an architecture (untrained without --pretrained)",
    )
    p.add_argument("--pretrained", default=None, help="weights: a tag, a dataset alias (cityscapes) or a local file")
    p.add_argument("--checkpoint", default=None, help="local checkpoint file (.safetensors or mmseg .pth)")
    p.add_argument(
        "--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="create_model overrides, e.g. num_classes=5"
    )
    p.add_argument(
        "--size", type=parse_size, default=(512, 512), help="HxW of the network input to time (default: 512x512)"
    )
    p.add_argument(
        "--formats",
        type=_format_list,
        default=None,
        metavar="NAME,...",
        help=f"deployment formats to try (default: every one that runs on a CPU: {formats})",
    )
    p.add_argument("--threads", type=int, default=None, help="threads to time under (default: torch's default)")
    p.add_argument("--runs", type=int, default=3, help="timed calls per backend, after one warm-up (default 3)")
    p.add_argument("--no-cache", action="store_true", help="measure again even where a decision is cached")


def run_benchmark_backends(args: argparse.Namespace) -> int:
    from ..deploy.backend_names import check_formats
    from ..deploy.selection import fastest
    from ..fields import check_int
    from .common import model_from_args

    formats = check_formats(args.formats)  # bad names fail before the model is built
    if args.threads is not None:
        check_int("--threads", args.threads, 1)
    check_int("--runs", args.runs, 1)
    kwargs = parse_model_kwargs(args.model_kwargs)
    model = model_from_args(args.model, args.pretrained, args.checkpoint, **kwargs).eval()
    _, table = fastest(model, args.size, formats=formats, threads=args.threads, cache=not args.no_cache, runs=args.runs)
    print(table)
    return 0
