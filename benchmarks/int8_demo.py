"""INT8 on the demo task: mIoU and speed of the quantized ONNX and OpenVINO models against fp32 (PyTorch,
onnxruntime, OpenVINO).

    python benchmarks/int8_demo.py                        # uses (or makes) the demo run in benchmarks/scratch/demo
    python benchmarks/int8_demo.py --demo deeplabv3p-demo --threads 2

The demo's trained model (``deeplabv3p demo``) is exported to ONNX and statically quantized, calibrated on the
demo's training images through predict's own preprocessing (`deeplabv3p.deploy.calibration`). When openvino and
nncf are installed it is also exported to OpenVINO and quantized with NNCF, plainly and with accuracy control
(held out: the next training images; metric: label agreement with PyTorch fp32, `--max-drop`). Each path then
predicts every held-out image through the same pipeline: mIoU against the masks (mmseg's IoUMetric), pixel
agreement of the labels with PyTorch fp32, and images/s over the held-out set (after one warm-up image; the best of
`--repeats` passes taken round-robin across the paths, since the machine may be shared). Results go to
``benchmarks/results/cpu-Nt_demo_int8_DATE.{json,md}``.
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
from deeplabv3p.deploy.onnx_int8 import DEFAULT_METHOD, quantize_onnx  # noqa: E402
from deeplabv3p.deploy.onnx_runtime import OnnxSegmenter  # noqa: E402
from deeplabv3p.train.datasets import SegmentationDataset  # noqa: E402
from deeplabv3p.train.metrics import ConfusionMatrix  # noqa: E402


def _evaluate(segmenter, dataset: SegmentationDataset, reference: list[np.ndarray] | None) -> dict:
    """mIoU, agreement with `reference` labels and images/s (one timed pass) of `segmenter` over `dataset`."""
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


def _retime(paths: dict, rows: dict[str, dict], dataset: SegmentationDataset, rounds: int) -> None:
    """Time every path again, `rounds` times in turn (round-robin, so that a change of the machine's load falls on
    all paths alike), and keep each path's best images/s."""
    images = [dataset.read_image(i) for i in range(len(dataset))]
    for _ in range(rounds):
        for name, segmenter in paths.items():
            started = time.perf_counter()
            segmenter.predict(images)
            rows[name]["images_per_s"] = max(rows[name]["images_per_s"], len(images) / (time.perf_counter() - started))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "benchmarks" / "scratch" / "demo", help="demo folder")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads (default 2)")
    parser.add_argument("--calibration-images", type=int, default=32, help="training images to calibrate on")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=["minmax", "percentile", "entropy"])
    parser.add_argument(
        "--max-drop",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[0.005],
        help="NNCF accuracy control: largest label-agreement drop, one row each (comma-separated; default 0.005)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the held-out set (best kept)")
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
    openvino_paths, openvino_meta = _openvino(model, work, train_images, args)
    load = list(os.getloadavg())
    paths = {
        "PyTorch fp32": model,
        "PyTorch auto (optimize_for_inference)": model.optimize_for_inference(dtype="auto"),
        "onnxruntime fp32": OnnxSegmenter(fp32_file, threads=args.threads),
        "onnxruntime int8": OnnxSegmenter(int8_file, threads=args.threads),
        **openvino_paths,
    }
    rows: dict[str, dict] = {}
    reference = None
    for name, segmenter in paths.items():
        rows[name] = _evaluate(segmenter, val, reference)
        reference = reference or rows[name]["labels"]
        print(f"{name}: mIoU {rows[name]['mIoU']:.2f}, {rows[name]['images_per_s']:.1f} images/s", flush=True)
    for row in rows.values():
        row.pop("labels")
    _retime(paths, rows, val, args.repeats - 1)
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
        "repeats": args.repeats,
        **openvino_meta,
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
        *_openvino_lines(meta),
        f"- images/s: the best of {args.repeats} passes over the held-out set, taken in turn across the paths",
        "",
        "| path | mIoU | aAcc | labels = PyTorch fp32 | images/s | vs PyTorch fp32 | vs onnxruntime fp32 | "
        "vs onnxruntime int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    torch_fp32 = rows["PyTorch fp32"]["images_per_s"]
    ort_int8 = rows["onnxruntime int8"]["images_per_s"]
    for path, row in rows.items():
        agree = "" if row["agreement"] is None else f"{100 * row['agreement']:.2f}%"
        speed = row["images_per_s"]
        lines.append(
            f"| {path} | {row['mIoU']:.2f} | {row['aAcc']:.2f} | {agree} | {speed:.3g} | {speed / torch_fp32:.2f}x | "
            f"{speed / fp32:.2f}x | {speed / ort_int8:.2f}x |"
        )
    report.write_atomic(args.out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _openvino(model, work: Path, train_images: list[Path], args: argparse.Namespace) -> tuple[dict, dict]:
    """The OpenVINO rows (fp32 in f32 and bf16, NNCF int8 plain and with accuracy control at each --max-drop) and
    their stamps; none when openvino or nncf is missing."""
    try:
        import nncf
        import openvino
    except ImportError as e:
        print(f"OpenVINO rows skipped: {e}")
        return {}, {}
    from deeplabv3p.deploy.openvino_int8 import quantize_openvino, torch_reference
    from deeplabv3p.deploy.openvino_runtime import OpenVinoSegmenter

    n = args.calibration_images
    fp32_xml = deeplabv3p.deploy.export(model, work / "demo.xml", format="openvino", input_size=(128, 128)).path
    paths = {
        "OpenVINO fp32 (f32)": OpenVinoSegmenter(fp32_xml, threads=args.threads),
        "OpenVINO fp32 file, bf16 inference": OpenVinoSegmenter(fp32_xml, threads=args.threads, precision="bf16"),
    }
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    int8_files = {
        "OpenVINO int8 (NNCF)": quantize_openvino(
            fp32_xml, work / "demo.int8.xml", calibration_inputs(model, train_images, limit=n)
        )
    }
    seconds["OpenVINO int8 (NNCF)"] = time.perf_counter() - started
    held_out = train_images[n : 2 * n]
    for drop in args.max_drop:
        name = f"OpenVINO int8 (NNCF, accuracy control, max drop {drop:g})"
        started = time.perf_counter()
        int8_files[name] = quantize_openvino(
            fp32_xml,
            work / f"demo.int8.ac{drop:g}.xml",
            calibration_inputs(model, train_images, limit=n),
            held_out=list(calibration_inputs(model, held_out, limit=len(held_out))),
            reference=torch_reference(model),
            max_drop=drop,
        )
        seconds[name] = time.perf_counter() - started
    paths.update({name: OpenVinoSegmenter(path, threads=args.threads) for name, path in int8_files.items()})
    meta = {
        "openvino": openvino.__version__,
        "nncf": nncf.__version__,
        "nncf_seconds": seconds,
        "nncf_held_out_images": len(held_out),
        "convolutions": _convolutions(fp32_xml)[0],
        "int8_convolutions": {name: _convolutions(path)[1] for name, path in int8_files.items()},
    }
    return paths, meta


def _convolutions(xml: Path) -> tuple[int, int]:
    """The convolutions of an OpenVINO model, and how many of them take a fake-quantized (int8) input."""
    import openvino as ov

    convolutions = [op for op in ov.Core().read_model(str(xml)).get_ops() if op.get_type_name() == "Convolution"]
    quantized = [c for c in convolutions if c.input_value(0).get_node().get_type_name() == "FakeQuantize"]
    return len(convolutions), len(quantized)


def _openvino_lines(meta: dict) -> list[str]:
    if "openvino" not in meta:
        return []
    each = "; ".join(
        f"{name.removeprefix('OpenVINO int8 ')}: {meta['nncf_seconds'][name]:.0f} s, {count} of "
        f"{meta['convolutions']} convolutions with int8 inputs"
        for name, count in meta["int8_convolutions"].items()
    )
    return [
        f"- OpenVINO {meta['openvino']}, NNCF {meta['nncf']}: int8 calibrated on the same training images; accuracy "
        f"control holds out the next {meta['nncf_held_out_images']} training images (metric: label agreement with "
        f"PyTorch fp32); {each}. fp32 rows compiled with INFERENCE_PRECISION_HINT f32 (the bf16 row: the CPU "
        "plugin's default on AVX512-BF16/AMX CPUs)",
    ]


if __name__ == "__main__":
    sys.exit(main())
