"""Time `predict` (whole, slide, ms+flip) and show that sliding windows bound memory on a large image.

    python benchmarks/bench_predict.py --arch deeplabv3plus_r18_d8 --size 1024 2048 --modes whole slide
    python benchmarks/bench_predict.py --memory --size 4000 4000 --window-batch-sizes 1 4 16

Networks have random weights (speed and memory do not depend on them), so nothing is downloaded. Each memory
case runs in its own process and reports that process's peak resident memory (CPU) or peak CUDA allocation (GPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import deeplabv3p

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed_peak  # noqa: E402


def _model(args: argparse.Namespace) -> deeplabv3p.DeepLabV3Plus:
    model = deeplabv3p.create_model(args.arch, num_classes=args.num_classes).eval().to(args.device)
    return model


def _image(args: argparse.Namespace) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(*args.size, 3), dtype=np.uint8)


def _timings(args: argparse.Namespace) -> None:
    model, image = _model(args), _image(args)
    dtype = getattr(torch, args.dtype)
    crop = args.crop
    print(f"{args.arch} on {args.device} ({args.dtype}), image {args.size[0]}x{args.size[1]}, no resize")
    for mode in args.modes:
        kwargs = dict(resize=False, dtype=dtype, channels_last=args.channels_last)
        if mode == "slide":
            kwargs.update(mode="slide", crop_size=crop, window_batch_size=args.window_batch_sizes[0])
        elif mode == "tta":
            kwargs.update(tta=True)
        model.predict(image, **kwargs)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeat):
            model.predict(image, **kwargs)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.repeat
        print(f"  {mode:6s} {seconds:8.3f} s/image")


def _memory_child(args: argparse.Namespace, window_batch_size: int) -> dict:
    model, image = _model(args), _image(args)
    seconds, peak = timed_peak(
        torch.device(args.device),
        lambda: model.predict(
            image, mode="slide", crop_size=args.crop, resize=False, window_batch_size=window_batch_size
        ),
    )
    return {"window_batch_size": window_batch_size, "peak_mb": round(peak / 2**20), "seconds": round(seconds, 2)}


def _memory(args: argparse.Namespace) -> None:
    what = "peak CUDA allocation" if args.device.startswith("cuda") else "peak resident memory"
    print(f"{args.arch} slide {args.crop}x{args.crop} on a {args.size[0]}x{args.size[1]} image, {what}:")
    for wbs in args.window_batch_sizes:
        cmd = [sys.executable, __file__, "--child", str(wbs), *sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"  window_batch_size {r['window_batch_size']:3d}: {r['peak_mb']:7d} MB, {r['seconds']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="deeplabv3plus_r18_d8")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--modes", nargs="+", default=("whole", "slide"), choices=("whole", "slide", "tta"))
    parser.add_argument("--crop", type=int, default=512, help="slide window side")
    parser.add_argument("--window-batch-sizes", type=int, nargs="+", default=(4,))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="peak memory of slide per window batch size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_memory_child(args, args.child)))
    elif args.memory:
        _memory(args)
    else:
        _timings(args)


if __name__ == "__main__":
    main()
