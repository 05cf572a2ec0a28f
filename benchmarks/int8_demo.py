"""INT8 on the demo task: mIoU and speed of the quantized ONNX model against fp32 (PyTorch and onnxruntime).

    python benchmarks/int8_demo.py                        # uses (or makes) the demo run in benchmarks/scratch/demo
    python benchmarks/int8_demo.py --demo deeplabv3p-demo --threads 2

The demo's trained model (``deeplabv3p demo``) is exported to ONNX and statically quantized, calibrated on the
demo's training images through predict's own preprocessing (`deeplabv3p.deploy.calibration`). Each path then
predicts every held-out image through the same pipeline: mIoU against the masks (mmseg's IoUMetric), pixel
agreement of the labels with PyTorch fp32, and images/s over the held-out set (after one warm-up image).
Results go to ``benchmarks/results/cpu-Nt_demo_int8_DATE.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import deeplabv3p  # noqa: E402
from benchmarks import adapters, report  # noqa: E402
from benchmarks.run import cpu_stamp  # noqa: E402
from deeplabv3p.deploy.calibration import calibration_inputs  # noqa: E402
from deeplabv3p.deploy.onnx_int8 import quantize_onnx  # noqa: E402
from deeplabv3p.deploy.onnx_runtime import OnnxSegmenter  # noqa: E402
from deeplabv3p.train.datasets import SegmentationDataset  # noqa: E402
from deeplabv3p.train.metrics import ConfusionMatrix  # noqa: E402


def _evaluate(segmenter, dataset: SegmentationDataset, reference: list[np.ndarray] | None) -> dict:
    """mIoU, agreement with `reference` labels and images/s of `segmenter` over `dataset`."""
    images = [dataset.read_image(i) for i in range(len(dataset))]
    segmenter.predict(images[0])  # warm-up
    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    started = time.perf_counter()
    results = segmenter.predict(images)
    seconds = time.perf_counter() - started
    labels = [r.labels for r in results]
    for i, pred in enumerate(labels):
        matrix.update(torch.from_numpy(pred), torch.from_numpy(dataset.read_mask(i)))
    metrics = matrix.compute(dataset.classes)
    agreement = None
    if reference is not None:
        agreement = sum(int((a == b).sum()) for a, b in zip(labels, reference)) / sum(a.size for a in labels)
    return {
        "mIoU": metrics["mIoU"],
        "aAcc": metrics["aAcc"],
        "agreement": agreement,
        "images_per_s": len(images) / seconds,
        "labels": labels,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "benchmarks" / "scratch" / "demo", help="demo folder")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads (default 2)")
    parser.add_argument("--calibration-images", type=int, default=32, help="training images to calibrate on")
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    best = args.demo / "run" / "best"
    if not best.is_dir():
        from deeplabv3p.train.demo import run_demo

        run_demo(args.demo, progress=False)
    model = deeplabv3p.create_model(str(best)).eval()
    val = SegmentationDataset(args.demo / "data", "val")
    train_images = sorted((args.demo / "data" / "images" / "train").iterdir())
    work = args.demo / "onnx"
    work.mkdir(exist_ok=True)
    fp32_file = deeplabv3p.deploy.export(model, work / "demo.onnx", input_size=(128, 128)).path
    int8_file = work / f"demo.int8.{args.method}.onnx"
    started = time.perf_counter()
    quantize_onnx(
        fp32_file, int8_file, calibration_inputs(model, train_images, limit=args.calibration_images), method=args.method
    )
    quantize_s = time.perf_counter() - started
    load = list(os.getloadavg())
    paths = {
        "PyTorch fp32": model,
        "PyTorch auto (optimize_for_inference)": model.optimize_for_inference(dtype="auto"),
        "onnxruntime fp32": OnnxSegmenter(fp32_file, threads=args.threads),
        "onnxruntime int8": OnnxSegmenter(int8_file, threads=args.threads),
    }
    rows: dict[str, dict] = {}
    reference = None
    for name, segmenter in paths.items():
        rows[name] = _evaluate(segmenter, val, reference)
        reference = reference or rows[name]["labels"]
        print(f"{name}: mIoU {rows[name]['mIoU']:.2f}, {rows[name]['images_per_s']:.1f} images/s", flush=True)
    for row in rows.values():
        row.pop("labels")
    image = val.read_image(0)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_stamp(),
        "threads": args.threads,
        "loadavg_start": load,
        "loadavg_end": list(os.getloadavg()),
        "versions": adapters.library_versions(),
        "demo": str(args.demo),
        "val_images": len(val),
        "image_size": list(image.shape[:2]),
        "calibration_images": min(args.calibration_images, len(train_images)),
        "method": args.method,
        "quantize_s": quantize_s,
        "auto_dtype": str(paths["PyTorch auto (optimize_for_inference)"].inference_dtype).removeprefix("torch."),
    }
    results = {"meta": meta, "paths": rows}
    name = f"cpu-{args.threads}t_demo_int8_{meta['date'][:10]}"
    report.write_atomic(args.out / f"{name}.json", json.dumps(results, indent=1) + "\n")
    fp32 = rows["onnxruntime fp32"]["images_per_s"]
    lines = [
        "# INT8 on the demo task",
        "",
        f"- date (UTC): {meta['date']}; CPU: {meta['cpu']['model']}, SIMD flags {' '.join(meta['cpu']['simd_flags'])}",
        f"- threads: {args.threads}; load average at start {report._load(load)}, at end "
        f"{report._load(meta['loadavg_end'])}",
        f"- {len(val)} held-out demo images of {image.shape[0]}x{image.shape[1]}; INT8 calibrated on "
        f"{meta['calibration_images']} training images ({args.method}), quantization took {quantize_s:.0f} s; "
        f"dtype='auto' picked {meta['auto_dtype']}",
        "",
        "| path | mIoU | aAcc | labels = PyTorch fp32 | images/s | vs onnxruntime fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for path, row in rows.items():
        agree = "" if row["agreement"] is None else f"{100 * row['agreement']:.2f}%"
        lines.append(
            f"| {path} | {row['mIoU']:.2f} | {row['aAcc']:.2f} | {agree} | {row['images_per_s']:.3g} | "
            f"{row['images_per_s'] / fp32:.2f}x |"
        )
    report.write_atomic(args.out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
