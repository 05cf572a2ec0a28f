"""Peak memory and throughput of streamed raster prediction (`predict_raster`) by raster size.

    python benchmarks/raster_memory.py                          # 4000, 8000 and 16000 pixels square
    python benchmarks/raster_memory.py --sizes 4000 8000 --window 512 --stride 341

Synthetic 3-band uint8 GeoTIFFs (tiled 256, deflate; smooth gradients and noise) are made once in ``--workdir``.
Each size runs in its own process, which reports its peak resident memory over the whole `predict_raster` call
(reading, the network, blending, storing strips, writing the label GeoTIFF) and, for comparison, what it held
before the call (interpreter, torch, the model). Throughput is the share of the call's seconds the network's forward
took (timed within the call). As a cross-check, the network alone on the same windows:
in the same process, after the raster, the network runs on ``--net-chunks`` batches of windows of the same shape
(``window_batch_size`` windows each), and its time is scaled to the raster's number of batches. The network is a
ResNet-18 DeepLabV3+ at 1/8 of its widths (``--full-width`` keeps them) with random weights: its speed is not the
point, only what streaming adds to it; a second run with the network replaced by a stub measures what streaming
costs by itself. Results: ``--out`` (JSON and Markdown, with the CPU's flags).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import cpu_stamp  # noqa: E402
from benchmarks.timing import current_memory_bytes, timed_peak  # noqa: E402

NARROW = dict(encoder_kwargs={"channels": (8, 16, 32, 64)}, decoder_channels=16, low_level_channels=8, aux_channels=8)
CPU = torch.device("cpu")


def make_raster(path: Path, size: int) -> Path:
    """A ``size x size`` 3-band uint8 GeoTIFF (UTM 32N, 0.5 m pixels), written 256 rows at a time."""
    import rasterio
    from rasterio.transform import Affine

    if path.is_file():
        return path
    tmp = path.with_name(path.name + ".part")
    profile = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", crs="EPSG:32632",
                   transform=Affine(0.5, 0, 500000.0, 0, -0.5, 5500000.0), tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate")  # fmt: skip
    rng = np.random.default_rng(0)
    xx = np.arange(size, dtype=np.float32)[None]
    with rasterio.open(tmp, "w", **profile) as dst:
        for y in range(0, size, 256):
            rows = np.arange(y, min(y + 256, size), dtype=np.float32)[:, None]
            bands = [np.sin(rows / (40 + 9 * b) + b) * np.cos(xx / (55 - 7 * b)) for b in range(3)]
            noise = rng.integers(0, 24, size=(3, len(rows), size), dtype=np.uint8)
            block = (np.stack(bands) + 1) * 115 + noise
            dst.write(block.astype(np.uint8), window=rasterio.windows.Window(0, y, size, len(rows)))
    tmp.replace(path)
    return path


def _model(args: argparse.Namespace) -> torch.nn.Module:
    import deeplabv3p

    torch.manual_seed(0)
    kwargs = {} if args.full_width else NARROW
    return deeplabv3p.create_model(args.arch, num_classes=args.num_classes, **kwargs).eval()


def _child(args: argparse.Namespace, size: int) -> dict:
    from deeplabv3p.inference.pipeline import slide_windows
    from deeplabv3p.inference.raster_predict import RasterOptions, predict_raster

    torch.set_num_threads(args.threads)
    model = _model(args)
    source = Path(args.workdir) / f"raster_{size}.tif"
    out = Path(args.workdir) / f"labels_{size}.tif"
    before = current_memory_bytes(CPU)
    options = dict(crop_size=args.window, stride=args.stride, window_batch_size=args.window_batch_size)
    forward, in_run = model.forward, [0.0]

    def timed_forward(x: torch.Tensor) -> torch.Tensor:  # the network's own seconds within the run
        start = time.perf_counter()
        try:
            return forward(x)
        finally:
            in_run[0] += time.perf_counter() - start

    model.forward = timed_forward
    seconds, peak = timed_peak(
        CPU, lambda: predict_raster(model, source, out, raster=RasterOptions(), resume=False, **options)
    )
    model.forward = forward
    windows = len(slide_windows(size, size, (args.window, args.window), (args.stride, args.stride)))
    batches = math.ceil(windows / args.window_batch_size)
    x = torch.randn(args.window_batch_size, 3, args.window, args.window)
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(args.net_chunks):
            model(x)
        per_batch = (time.perf_counter() - start) / args.net_chunks
    network = per_batch * batches

    def stub(x: torch.Tensor) -> torch.Tensor:  # the network replaced: what streaming itself costs
        return torch.zeros((x.shape[0], args.num_classes, *x.shape[2:]))

    model.forward = stub
    stub_seconds = time.perf_counter()
    predict_raster(model, source, out, raster=RasterOptions(), resume=False, **options)
    stub_seconds = time.perf_counter() - stub_seconds
    out.unlink(missing_ok=True)
    return {
        "size": size,
        "windows": windows,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 2**20),
        "rss_before_mb": round(before / 2**20),
        "megapixels_per_s": round(size * size / seconds / 1e6, 3),
        "network_in_run_seconds": round(in_run[0], 2),
        "throughput_vs_network": round(in_run[0] / seconds, 3),
        "network_alone_seconds": round(network, 2),
        "streaming_alone_seconds": round(stub_seconds, 2),
        "throughput_vs_network_from_parts": round(network / (network + stub_seconds), 3),
    }


def _markdown(record: dict) -> str:
    a = record["args"]
    cpu = record["cpu"]
    lines = [
        f"# Streamed raster prediction: peak memory and throughput ({cpu['model']}, {a['threads']} threads)",
        "",
        f"- date (UTC): {record['date']}; SIMD flags: {' '.join(cpu['simd_flags'])}",
        f"- load average at start: {'/'.join(f'{v:.1f}' for v in record['load_average_at_start'])} "
        f"({os.cpu_count()} logical CPUs; other jobs shared them: seconds are noisy, memory is not)",
        f"- network: {a['arch']} at {'full' if a['full_width'] else '1/8'} width, {a['num_classes']} classes, "
        f"random weights; window {a['window']}, stride {a['stride']}, {a['window_batch_size']} windows a batch",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, rasterio {record['rasterio']}",
        f"- command: `{record['command']}`",
        "- peak RSS: the process's VmHWM over the predict_raster call (before: what the process held before it)",
        "- network in the run: the seconds the network's forward took within the predict_raster call; throughput / "
        "network = those seconds / the call's seconds (1.0: reading, blending and writing cost nothing), measured in "
        "the same seconds, so a machine whose speed drifts does not skew it",
        "- network alone: the same network on batches of windows of the same shape, scaled to the raster's batches "
        "(timed after the run: a cross-check, noisy where the machine is shared)",
        "- streaming alone: the same predict_raster call with the network replaced by a stub returning zeros "
        "(reading, normalising, blending, storing strips, writing the GeoTIFF); network / (network + streaming) is "
        "the throughput a run reaches where nothing overlaps (on this CPU the reading thread is off: torch's threads "
        "take every core)",
        "",
        "| raster (px) | windows | seconds | Mpx/s | peak RSS (MB) | RSS before (MB) | network in the run (s) | "
        "throughput / network | network alone (s) | streaming alone (s) | network alone / (network alone + "
        "streaming alone) | load average after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ("windows", "seconds", "megapixels_per_s", "peak_rss_mb", "rss_before_mb", "network_in_run_seconds",
            "throughput_vs_network", "network_alone_seconds", "streaming_alone_seconds",
            "throughput_vs_network_from_parts")  # fmt: skip
    for r in record["results"]:
        cells = [str(r.get(key, "-")) for key in keys]
        load = f"{r['load_average'][0]:.1f}" if "load_average" in r else "-"
        lines.append(f"| {r['size']}x{r['size']} | {' | '.join(cells)} | {load} |")
    peaks = [r["peak_rss_mb"] for r in record["results"]]
    if len(peaks) > 1:
        lines += ["", f"Peak RSS spread: largest / smallest = {max(peaks) / min(peaks):.3f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=(4000, 8000, 16000))
    parser.add_argument("--arch", default="deeplabv3plus_r18_d8")
    parser.add_argument("--full-width", action="store_true", help="the architecture's own widths, not 1/8 of them")
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--stride", type=int, default=512)
    parser.add_argument("--window-batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--net-chunks", type=int, default=16, help="batches timed for the network alone")
    parser.add_argument("--workdir", default="/tmp/deeplabv3p_raster_bench")
    parser.add_argument("--out", help="results path without extension (default: benchmarks/results/NAME)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args, args.child)))
        return
    import rasterio

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    name = args.out or str(ROOT / "benchmarks" / "results" / f"cpu-{args.threads}t_raster_memory_{now:%Y-%m-%d}")
    record = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(["benchmarks/raster_memory.py", *sys.argv[1:]]),
        "cpu": cpu_stamp(),
        "load_average_at_start": os.getloadavg(),
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "out")},
        "results": [],
    }
    for size in args.sizes:  # the results so far are written after each size
        make_raster(Path(args.workdir) / f"raster_{size}.tif", size)
        cmd = [sys.executable, __file__, "--child", str(size), *sys.argv[1:]]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        record["results"].append({**json.loads(out.strip().splitlines()[-1]), "load_average": os.getloadavg()})
        print(json.dumps(record["results"][-1]), flush=True)
        Path(name + ".json").write_text(json.dumps(record, indent=2) + "\n")
        Path(name + ".md").write_text(_markdown(record))
    print(_markdown(record))


if __name__ == "__main__":
    main()
