"""Reproduce the demo's mIoU quoted in the README: the offline demo run end to end, on the CPU by default.

    python benchmarks/demo_miou.py                  # seed 0, as `deeplabv3p demo`
    python benchmarks/demo_miou.py --seeds 0 1 2    # the spread over seeds
    python benchmarks/demo_miou.py --json demo.json

Prints, per seed, the validation mIoU/mAcc/aAcc, the per-class IoU, the wall-clock and CPU time and the thread count;
the numbers depend only on the seed (data, initialisation, sample order and augmentation are all seeded), the
times on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deeplabv3p.train.demo import DEMO_RECIPE, run_demo
from deeplabv3p.train.metrics import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run (default 0)")
    parser.add_argument("--iters", type=int, help=f"training iterations (default {DEMO_RECIPE['iters']})")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the demo; 0: torch's)")
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="deeplabv3p-demo-") as tmp:
        for seed in args.seeds:
            out = Path(args.out or tmp) / f"seed{seed}"
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            result = run_demo(
                out, iters=args.iters, seed=seed, device=args.device, threads=args.threads or None, progress=False
            )
            wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
            m = result.metrics
            rows.append({"seed": seed, "mIoU": m["mIoU"], "mAcc": m["mAcc"], "aAcc": m["aAcc"], "IoU": m["IoU"],
                         "wall_s": wall, "cpu_s": cpu})  # fmt: skip
            threads = args.threads or torch.get_num_threads()
            print(f"seed {seed}: wall {wall:.0f} s, cpu {cpu:.0f} s, {threads} torch threads, {os.cpu_count()} cpus")
            print(format_table(m), flush=True)
    if len(rows) > 1:
        values = [r["mIoU"] for r in rows]
        print(f"mIoU over seeds {args.seeds}: mean {statistics.mean(values):.2f}, min {min(values):.2f}, "
              f"max {max(values):.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"recipe": DEMO_RECIPE, "runs": rows}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
