"""Peak memory of whole-mode predict on a large image, with and without whole mode's pixel budget.

    python benchmarks/whole_budget_memory.py --size 4000 6000
    python benchmarks/whole_budget_memory.py --size 4000 6000 --full-width

The model stands for one fine-tuned on small crops without a test scale: test mode whole, no rescale, training crop
512x512 (what `trained_cfg` saves). ``max_whole_pixels=0`` is the old behaviour (one whole-image pass); the default
budget slides over the image with the training crop. Random weights (memory does not depend on them), so nothing is
downloaded; by default the ResNet-18 is narrowed to 1/8 of its widths (``--full-width`` keeps them). Each case runs
in its own process and reports that process's peak resident memory (CPU) or peak CUDA allocation (GPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import deeplabv3p

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed_peak  # noqa: E402
from deeplabv3p.pretrained.test_settings import WHOLE_MAX_PIXELS  # noqa: E402

NARROW = dict(encoder_kwargs={"channels": (8, 16, 32, 64)}, decoder_channels=16, low_level_channels=8, aux_channels=8)


def _child(args: argparse.Namespace, budget: int) -> dict:
    kwargs = {} if args.full_width else NARROW
    model = deeplabv3p.create_model(args.arch, num_classes=args.num_classes, **kwargs).eval().to(args.device)
    cfg = model.pretrained_cfg
    assert cfg is not None
    model.pretrained_cfg = cfg.replace(test_mode="whole", test_scale=None, crop_size=(args.crop, args.crop))
    image = np.random.default_rng(0).integers(0, 256, size=(*args.size, 3), dtype=np.uint8)
    seconds, peak = timed_peak(torch.device(args.device), lambda: model.predict(image, max_whole_pixels=budget))
    return {"budget": budget, "peak_mb": round(peak / 2**20), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="deeplabv3plus_r18_d8")
    parser.add_argument("--full-width", action="store_true", help="the architecture's own widths, not 1/8 of them")
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--size", type=int, nargs=2, default=(4000, 6000), metavar=("H", "W"))
    parser.add_argument("--crop", type=int, default=512, help="the training crop the model saved")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args, args.child)))
        return
    width = "full-width" if args.full_width else "1/8-width"
    what = "peak CUDA allocation" if args.device.startswith("cuda") else "peak resident memory"
    print(f"{width} {args.arch} on {args.device}, whole mode, a {args.size[0]}x{args.size[1]} image (H x W), {what}:")
    for budget, name in ((0, "no budget (one pass) "), (WHOLE_MAX_PIXELS, "default budget (slide)")):
        cmd = [sys.executable, __file__, "--child", str(budget), *sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"  max_whole_pixels {budget:>9d} {name}: {r['peak_mb']:7d} MB, {r['seconds']:.2f} s")


if __name__ == "__main__":
    main()
