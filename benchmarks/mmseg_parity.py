"""Parity of the seven full-width architectures with mmsegmentation's own DeepLabV3+, built from its configs.

For each architecture: build mmseg's model from the seed row's config inside the mmseg wheel (SyncBN -> BN),
give it non-trivial weights (random init, BatchNorm statistics calibrated on dead-leaves images, classifier bias
centred so many classes win), convert its state dict with
`deeplabv3p.pretrained.convert.convert_mmseg_state_dict`, load it into our model with
`deeplabv3p.pretrained.state_dict.load_into` (every key accounted for), and compare in eval mode on an image
neither has seen: backbone features, the auxiliary head and the final logits (relative max difference, argmax
agreement). Needs mmseg, mmcv(-lite) and mmengine (see benchmarks/README.md); writes
``benchmarks/results/mmseg_parity.json`` and ``.md``.

    python benchmarks/mmseg_parity.py --size 256x512 --threads 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import deeplabv3p  # noqa: E402
from benchmarks import adapters, report  # noqa: E402
from benchmarks.inputs import calibrate, class_histogram, image_batches  # noqa: E402
from benchmarks.run import MMSEG_ARCHITECTURES, _size, device_name  # noqa: E402
from deeplabv3p.pretrained.convert import convert_mmseg_state_dict  # noqa: E402
from deeplabv3p.pretrained.state_dict import load_into  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


@torch.no_grad()
def compare(architecture: str, size: tuple[int, int], seed: int) -> dict:
    torch.manual_seed(seed)
    mm = adapters.build_mmseg_model(architecture)
    calib = image_batches(128, 256, batch=2, count=2, seed=seed)
    calibrate(mm, calib, mm.decode_head.conv_seg)
    ours = deeplabv3p.create_model(architecture)
    report_ = load_into(ours, convert_mmseg_state_dict(mm.state_dict()))
    if report_.reinitialized or report_.adapted or report_.dropped:
        raise AssertionError(f"load was not a plain copy: {report_}")
    mm.eval()
    ours.eval()
    (x,) = image_batches(*size, batch=1, count=1, seed=seed + 1)
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)]
    mm_feats = mm.extract_feat(x)
    our_feats = ours.encoder(x)
    mm_logits = mm.inference(x, metas)
    mm_aux = mm.auxiliary_head(list(mm_feats))
    align = mm.auxiliary_head.align_corners
    mm_aux = F.interpolate(mm_aux, size=size, mode="bilinear", align_corners=align)
    our_logits, our_aux = ours(x, return_aux=True)
    agree = (our_logits.argmax(1) == mm_logits.argmax(1)).double().mean().item()
    return {
        "architecture": architecture,
        "mmseg_config": adapters.seed_cfg(architecture).source_config,
        "num_params": sum(p.numel() for p in ours.parameters()),
        "feature_rel_diff": [rel(a, b) for a, b in zip(our_feats, mm_feats)],
        "aux_rel_diff": rel(our_aux, mm_aux),
        "logits_rel_diff": rel(our_logits, mm_logits),
        "logits_max_abs_diff": (our_logits - mm_logits).abs().max().item(),
        "argmax_agreement": agree,
        "class_histogram": class_histogram(mm_logits.argmax(1), mm_logits.shape[1]),
    }


def render(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Parity with mmsegmentation's DeepLabV3+ (full width, all seven architectures)",
        "",
        f"- {meta['date']} UTC, {meta['device_name']}, input {meta['size'][0]}x{meta['size'][1]}, fp32, eval mode",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "- weights: mmseg's random init, BatchNorm statistics calibrated on dead-leaves images, classifier bias "
        "centred; converted with `convert_mmseg_state_dict` and loaded with `load_into`",
        "- relative difference = max |ours - mmseg| / max |mmseg|",
        "",
        "| architecture | mmseg config | params | features (max rel.) | aux head | logits | argmax agreement | "
        "classes used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["architectures"]:
        if "error" in r:
            lines.append(f"| {r['architecture']} | | | | | | | {r['error']} |")
            continue
        used = sum(s > 0.001 for s in r["class_histogram"])
        lines.append(
            f"| {r['architecture']} | {r['mmseg_config']} | {r['num_params'] / 1e6:.1f}M | "
            f"{max(r['feature_rel_diff']):.1e} | {r['aux_rel_diff']:.1e} | {r['logits_rel_diff']:.1e} | "
            f"{100 * r['argmax_agreement']:.4f}% | {used} of {len(r['class_histogram'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="all", help="comma-separated architectures or 'all'")
    p.add_argument("--size", type=_size, default=(256, 512), help="HxW of the comparison input")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", module=r"mm(cv|seg|engine)")  # mmcv-lite and deprecation chatter
    ok, note = adapters.available("mmseg")
    if not ok:
        print(note, file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    models = list(MMSEG_ARCHITECTURES) if args.models == "all" else args.models.split(",")
    results = {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "device_name": device_name("cpu"),
            "size": list(args.size),
            "versions": adapters.library_versions(),
        },
        "architectures": [],
    }
    for arch in models:
        started = time.time()
        try:
            r = compare(arch, args.size, args.seed)
        except Exception as e:  # one broken architecture must not hide the others' results
            r = {"architecture": arch, "error": f"{type(e).__name__}: {e}"[:300]}
        results["architectures"].append(r)
        status = r.get("error") or (
            f"logits rel {r['logits_rel_diff']:.1e}, aux {r['aux_rel_diff']:.1e}, "
            f"features {max(r['feature_rel_diff']):.1e}, argmax {100 * r['argmax_agreement']:.4f}%"
        )
        print(f"[{time.time() - started:5.0f} s] {arch}: {status}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_atomic(args.out / "mmseg_parity.json", json.dumps(results, indent=1) + "\n")
    report.write_atomic(args.out / "mmseg_parity.md", render(results))
    print(f"wrote {args.out / 'mmseg_parity.json'} and .md")
    failed = [r for r in results["architectures"] if "error" in r or r["logits_rel_diff"] > 1e-4]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
