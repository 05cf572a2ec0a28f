"""Every ```python and ```bash block of README.md, and every usage command in the docstrings of examples/*.py, is run.

The README is the first thing a user runs; this test keeps it true. Blocks run as written, in a fresh working
folder per README section (``## ...``), in order: the Python blocks of a section share one namespace (seeded with
the Quick start's ``import torch`` and ``import deeplabv3p``), the bash blocks run under ``bash -e`` with the
``deeplabv3p`` console script of this interpreter's environment first on PATH.

This machine has no network and no GPU, and a test has seconds, not hours. What a block needs from outside is
provided by the stand-ins below, and nothing else differs from what the README says:

- `files`: the inputs the blocks name (images, datasets, downloads, checkpoints), small, in the working folder;
- STANDIN_MODELS: small networks saved with ``save_pretrained``, in place of published weights;
- the Hugging Face cache holds the repo the README's ``push_to_hub`` would make, and ``HF_HUB_OFFLINE=1`` is set;
- SUBSTITUTIONS: textual replacements in the blocks, each with its reason: published weights by those folders,
  big sizes and schedules by small ones, lines that need the network or a GPU removed, whole blocks skipped.
  A substitution that no longer matches its section is an error (`test_every_substitution_applies`), so the
  table cannot rot; a block that none matches runs exactly as written;
- one torch thread (`offline`), as the tiny stand-ins run fastest;
- torch.hub: ``torch.hub.list`` / ``load`` of ``deeplabv3p/deeplabv3p`` get this checkout instead of GitHub's
  (``torch.hub._get_cache_or_reload`` patched: torch.hub has no offline setting);
- SLOW: blocks that cannot run in a few seconds on 2 cores, marked ``slow``.

A failing block names its README line: Python tracebacks point at ``README.md`` lines, bash reports the line of the
failing command.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from nets import DEEP_STEM, NARROW
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
EXAMPLES = sorted((REPO / "examples").glob("*.py"))

# The narrow widths of tests/nets.py with mmseg's deep stem, as create_model keywords: what a stand-in for a published
# architecture is built with, added where a block names the architecture itself (a checkpoint file, torch.hub).
NARROW_DEEP_STEM = "**" + repr({**NARROW, "encoder_kwargs": {**NARROW["encoder_kwargs"], **DEEP_STEM}})

# --------------------------------------------------------------------------------------------------- the stand-ins


# name -> the published tag whose metadata it carries. Each is that architecture at tests/nets.py's NARROW widths
# (seeded weights), with the tag's classes, palette and test settings except a small test scale (`SMALL_SCALE`), saved
# with save_pretrained under {standins}/NAME. The Hub and download.openmmlab.com are out of reach here, and the real
# networks at Cityscapes' test scale take seconds per image.
STANDIN_MODELS: dict[str, str] = {
    "r101-cityscapes": "deeplabv3plus_r101_d8.cityscapes_512x1024_80k",
    "r50-cityscapes": "deeplabv3plus_r50_d8.cityscapes_512x1024_80k",
    "r50-ade20k": "deeplabv3plus_r50_d8.ade20k_512x512_160k",
    "r50-voc12aug": "deeplabv3plus_r50_d8.voc12aug_512x512_40k",
    "r18-cityscapes": "deeplabv3plus_r18_d8.cityscapes_512x1024_80k",
    "r50-potsdam": "deeplabv3plus_r50_d8.potsdam_512x512_80k",
}
SMALL_SCALE = (128, 64)


@dataclass(frozen=True)
class Sub:
    """Replace `old` by `new` in the blocks of `sections` (README ``##`` headings or ``examples/NAME.py``).

    `new` may name ``{standins}`` (the folder of STANDIN_MODELS) and ``{parity_r50}`` (the create_model keywords of
    the narrow mmseg checkpoint in tests/data/parity); `new` = SKIP skips the block."""

    sections: tuple[str, ...]
    old: str
    new: str
    why: str


SKIP = "<skip the block>"
NO_INDEX = "installing needs a package index; the test runs in the environment it was installed into"
NO_HUB = "weights come from the Hub or download.openmmlab.com: a small saved network stands in (STANDIN_MODELS)"
BIG = "big sizes and long schedules: small ones run the same code in seconds"

SUBSTITUTIONS: tuple[Sub, ...] = (
    # Set up
    Sub(("Set up",), "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && ", "", NO_INDEX),
    Sub(("Set up",), 'pip install -e ".[dev]" && python -m pytest -q', SKIP, "it is this test suite"),
    Sub(("Set up",), "pip install torch torchvision --index-url", SKIP, NO_INDEX),
    Sub(("Set up",), "deeplabv3p demo\n", "deeplabv3p demo --iters 8 --no-progress\n", BIG),
    # weights
    Sub(
        ("Quick start", "Pretrained models"),
        'create_model("deeplabv3plus_r101_d8", pretrained="cityscapes")',
        'create_model("{standins}/r101-cityscapes")',
        NO_HUB,
    ),
    Sub(
        ("Predict", "Fine-tuning", "Fast inference and ONNX export"),
        'create_model("deeplabv3plus_r50_d8", pretrained="cityscapes"',
        'create_model("{standins}/r50-cityscapes"',
        NO_HUB,
    ),
    Sub(("Quick start",), "torch.randn(1, 3, 256, 512)", "torch.randn(1, 3, 64, 128)", BIG),
    Sub(
        ("Pretrained models",),
        'create_model("deeplabv3plus_r50_d8.ade20k_512x512_160k", pretrained=True)',
        'create_model("{standins}/r50-ade20k")',
        NO_HUB,
    ),
    Sub(
        ("Pretrained models",),
        'create_model("deeplabv3plus_r50_d8", pretrained="voc12aug", num_classes=3)',
        'create_model("{standins}/r50-voc12aug", num_classes=3)',
        NO_HUB,
    ),
    Sub(
        ("Pretrained models",),
        'create_model("deeplabv3plus_r18_d8", pretrained="cityscapes", in_chans=4)',
        'create_model("{standins}/r18-cityscapes", in_chans=4)',
        NO_HUB,
    ),
    Sub(
        ("Pretrained models",),
        'pretrained=True, checkpoint_path="downloaded.pth"\n)',
        f'pretrained=True, checkpoint_path="downloaded.pth", {NARROW_DEEP_STEM}\n)',
        "downloaded.pth (`files`) holds the tag's network at the narrow widths: the real one is 160 MB",
    ),
    Sub(
        ("Pretrained models",),
        'm.push_to_hub("someone/my-model")',
        "pass",
        "no Hub: the repo it would make is in the local Hugging Face cache (HF_HUB_OFFLINE=1) for the next line",
    ),
    Sub(
        ("mmseg checkpoints",),
        'pretrained="deeplabv3plus_r50-d8_512x1024_80k_cityscapes.pth")',
        'pretrained="deeplabv3plus_r50-d8_512x1024_80k_cityscapes.pth", {parity_r50})',
        "the file (`files`) is the narrow mmseg network of tests/data/parity: the real one is 160 MB",
    ),
    Sub(
        ("Pretrained models",),
        'torch.hub.load("deeplabv3p/deeplabv3p", "deeplabv3plus_r50_d8", pretrained="cityscapes")',
        'torch.hub.load("deeplabv3p/deeplabv3p", "deeplabv3plus_r50_d8", pretrained="{standins}/r50-cityscapes", '
        + NARROW_DEEP_STEM
        + ")",
        NO_HUB + "; a saved folder as `pretrained` of the architecture, at its narrow widths",
    ),
    Sub(
        ("Pretrained models",),
        "deeplabv3p convert deeplabv3plus_r50-d8_512x1024_80k_cityscapes_20200606_114049-f9fb496d.pth \\\n"
        "    --model deeplabv3plus_r50_d8.cityscapes_512x1024_80k --out r50-cityscapes/   # Hub-ready folder",
        "",
        "needs the published 160 MB checkpoint (its sha256 is checked); tests/pretrained/test_publish.py converts "
        "narrow ones",
    ),
    Sub(
        ("Pretrained models",),
        "deeplabv3p convert --all --from mmseg_checkpoints/ --push-to-hub",
        SKIP,
        "needs the 43 published checkpoints and the Hub; tests/pretrained/test_publish.py runs it on a fabricated zoo",
    ),
    # Predict
    Sub(
        ("Predict",),
        "--model deeplabv3plus_r50_d8 --pretrained cityscapes --out masks/",
        "--model {standins}/r50-cityscapes --out masks/",
        NO_HUB,
    ),
    Sub(("Predict",), "torchrun --nproc-per-node 8", SKIP, "8 GPUs and a second node"),
    Sub(
        ("Predict",),
        '"deeplabv3plus_r50_d8",\n    pretrained="potsdam",',
        '"{standins}/r50-potsdam",',
        NO_HUB,
    ),
    Sub(
        ("Predict",),
        'res = model.predict("tile.tif", mode="slide", crop_size=512, stride=384)',
        'res = model.predict("tile.tif", mode="slide", crop_size=48, stride=32)',
        BIG,
    ),
    # Large rasters (GeoTIFF)
    Sub(
        ("Large rasters (GeoTIFF)",),
        'deeplabv3p.create_model("deeplabv3plus_r50_d8", pretrained="potsdam")',
        'deeplabv3p.create_model("{standins}/r50-potsdam")',
        NO_HUB,
    ),
    Sub(
        ("Large rasters (GeoTIFF)",),
        "--model deeplabv3plus_r50_d8.potsdam",
        "--model {standins}/r50-potsdam --no-progress",
        NO_HUB,
    ),
    # Fine-tuning
    Sub(("Fine-tuning",), "deeplabv3p demo            #", "deeplabv3p demo --iters 8 --no-progress #", BIG),
    Sub(
        ("Fine-tuning",),
        'iters=2000, out="runs/exp1")',
        'iters=2, crop_size=(64, 64), batch_size=2, num_workers=0, out="runs/exp1")',
        BIG,
    ),
    Sub(
        ("Fine-tuning",),
        "deeplabv3p train --data data/ --model deeplabv3plus_r50_d8 --pretrained cityscapes --iters 2000 "
        "--out runs/exp1",
        "deeplabv3p train --data data/ --model {standins}/r50-cityscapes --iters 2 --crop-size 64 64 --batch-size 2 "
        "--num-workers 0 --out runs/exp1-cli",
        NO_HUB + "; " + BIG + "; the Python block above made runs/exp1 (the two ways to train are alternatives)",
    ),
    Sub(
        ("Fine-tuning",),
        "deeplabv3p train ... --resume",
        "deeplabv3p train --data data/ --model {standins}/r50-cityscapes --iters 4 --crop-size 64 64 --batch-size 2 "
        "--num-workers 0 --out runs/exp1-cli --resume",
        "'...' stands for the flags of the first line (4 iterations: continue the 2 done)",
    ),
    Sub(
        ("Fine-tuning",),
        "deeplabv3p train --data data/ --model deeplabv3plus --model-kwargs encoder=convnext_tiny --encoder-pretrained",
        "",
        "--encoder-pretrained downloads timm's ImageNet weights from the Hub",
    ),
    Sub(
        ("Fine-tuning",),
        "deeplabv3p train ... --amp bf16 --channels-last       # mixed precision on the GPU",
        "",
        "GPU",
    ),
    Sub(("Fine-tuning",), "torchrun --nproc_per_node 4 -m deeplabv3p train ...   # 4 GPUs", "# 4 GPUs", "4 GPUs"),
    Sub(
        ("Fine-tuning",),
        "--model deeplabv3plus_r50_d8.cityscapes_512x1024_80k --data data/cityscapes",
        "--model {standins}/r50-cityscapes --data data/cityscapes",
        NO_HUB,
    ),
    Sub(
        ("Fine-tuning",),
        "--model deeplabv3plus_r50_d8.ade20k_512x512_160k --data data/ade --tta",
        "--model {standins}/r50-ade20k --data data/ade --tta",
        NO_HUB,
    ),
    Sub(
        ("Fine-tuning",),
        "--model deeplabv3plus_r50_d8.potsdam_512x512_80k --iters 8000",
        "--model {standins}/r50-potsdam --iters 2 --crop-size 64 64 --batch-size 2 --num-workers 0 --no-progress",
        NO_HUB + "; " + BIG,
    ),
    Sub(("Fine-tuning",), "--raster-window 512x512", "--raster-window 64x64", BIG + " (the rasters are 96x128)"),
    Sub(
        ("Fine-tuning",),
        "torchrun --nproc_per_node 4 -m deeplabv3p train --recipe deeplabv3plus_r50_d8.cityscapes_512x1024_80k \\\n"
        "    --data data/cityscapes --encoder-pretrained --out runs/cs80k",
        "",
        "4 GPUs, timm's ImageNet weights from the Hub, and 80k iterations",
    ),
    # Fast inference and ONNX export
    Sub(
        ("Fast inference and ONNX export",),
        'deeplabv3p.deploy.export(model, "model.onnx")',
        'deeplabv3p.deploy.export(model, "model.onnx", input_size=(64, 64))',
        BIG,
    ),
    Sub(("Fast inference and ONNX export",), "torch.randn(1, 3, 512, 1024)", "torch.randn(1, 3, 64, 128)", BIG),
    Sub(("Fast inference and ONNX export",), 'pip install -e ".[onnx]"', "", NO_INDEX),
    Sub(("Fast inference and ONNX export",), 'pip install -e ".[ncnn]"', "", NO_INDEX),
    Sub(
        ("Fast inference and ONNX export",),
        "deeplabv3p export deeplabv3plus_r50_d8.cityscapes --format ncnn --out model.ncnn.param\n",
        "deeplabv3p export {standins}/r50-cityscapes --format ncnn --out model.ncnn.param --size 64x64\n",
        NO_HUB + "; " + BIG,
    ),
    Sub(
        ("Fast inference and ONNX export",),
        "deeplabv3p export deeplabv3plus_r50_d8.cityscapes --out model.onnx\n",
        "deeplabv3p export {standins}/r50-cityscapes --out model.onnx --size 64x64\n",
        NO_HUB + "; " + BIG,
    ),
    Sub(
        ("Fast inference and ONNX export",),
        "deeplabv3p export deeplabv3plus_r50_d8.cityscapes --out model.onnx --int8",
        "deeplabv3p export {standins}/r50-cityscapes --out model.onnx --size 64x64 --int8",
        NO_HUB + "; " + BIG,
    ),
    Sub(("Fast inference and ONNX export",), 'pip install -e ".[openvino]"', "", NO_INDEX),
    Sub(
        ("Fast inference and ONNX export",),
        "deeplabv3p export deeplabv3plus_r50_d8.cityscapes --format openvino --out model.xml\n",
        "deeplabv3p export {standins}/r50-cityscapes --format openvino --out model.xml --size 64x64\n",
        NO_HUB + "; " + BIG,
    ),
    Sub(
        ("Fast inference and ONNX export",),
        "deeplabv3p export deeplabv3plus_r50_d8.cityscapes --format openvino --out model.xml \\\n    --int8",
        "deeplabv3p export {standins}/r50-cityscapes --format openvino --out model.xml --size 64x64 \\\n"
        "    --calibration-images 2 --int8",
        NO_HUB + "; " + BIG + "; the folder has 3 images: 2 to calibrate, 1 held out",
    ),
    # The fastest runtime on your machine
    Sub(
        ("The fastest runtime on your machine",),
        'create_model("deeplabv3plus_r50_d8", pretrained="cityscapes"',
        'create_model("{standins}/r50-cityscapes"',
        NO_HUB,
    ),
    Sub(("The fastest runtime on your machine",), "(512, 1024), threads=2)", "(64, 64), threads=1)", BIG),
    Sub(
        ("The fastest runtime on your machine",),
        "benchmark-backends deeplabv3plus_r50_d8.cityscapes --size 512x1024 --threads 2",
        "benchmark-backends {standins}/r50-cityscapes --size 64x64 --threads 1",
        NO_HUB + "; " + BIG,
    ),
    Sub(
        ("The fastest runtime on your machine",),
        "--model deeplabv3plus_r50_d8.cityscapes --backend",
        "--model {standins}/r50-cityscapes --backend-size 64x64 --backend",
        NO_HUB + "; " + BIG,
    ),
    # Performance
    Sub(
        ("Performance",),
        "python benchmarks/run.py --device cpu",
        SKIP,
        "the benchmarks need mmsegmentation and smp in their own environment, minutes per row, and a GPU for "
        "one line; tests/test_benchmark_tools.py tests their tools",
    ),
    # examples
    Sub(
        ("examples/finetune.py",),
        "--iters 200 \\\n    --crop-size 128 --batch-size 8",
        "--iters 2 \\\n    --crop-size 64 --batch-size 2",
        BIG,
    ),
    Sub(
        ("examples/finetune.py",),
        "--data my_data --model deeplabv3plus_r50_d8 --pretrained cityscapes --iters 2000",
        "--data my_data --model {standins}/r50-cityscapes --iters 2 --crop-size 64 --batch-size 2 --out runs/ft2",
        NO_HUB + "; " + BIG + "; the command above made runs/finetune (the default --out)",
    ),
    Sub(
        ("examples/predict.py",),
        "--model deeplabv3plus_r50_d8 --pretrained cityscapes",
        "--model {standins}/r50-cityscapes",
        NO_HUB,
    ),
    Sub(
        ("examples/render_predict_figure.py",),
        "--out examples/predict_example.jpg",
        "--out predict_example.jpg",
        "the README's picture in the repository must not be overwritten",
    ),
)

# (section, text in the block, why): blocks that take more than a few seconds on 2 cores even with the stand-ins.
SLOW: tuple[tuple[str, str, str], ...] = (
    ("Set up", "deeplabv3p demo", "writes 200 images and trains; the demo has its own tests"),
    ("Fine-tuning", "deeplabv3p demo", "writes 200 images and trains; the demo has its own tests"),
    ("Fine-tuning", "deeplabv3p train --data", "four CLI processes that train and evaluate"),
    ("Fast inference and ONNX export", "deeplabv3p export", "ONNX export, INT8 calibration and three CLI processes"),
    ("The fastest runtime on your machine", "deeplabv3p benchmark-backends", "exports and times every runtime, 3 CLIs"),
    ("Fine-tuning", "deeplabv3p prepare potsdam", "five CLI processes (each imports torch: about 4 s)"),
    ("Fine-tuning", "--layout rasters", "two CLI processes that train and evaluate"),
    ("Large rasters (GeoTIFF)", "deeplabv3p predict ortho.tif", "a CLI process (imports torch and GDAL: about 5 s)"),
    ("examples/finetune.py", "python examples/finetune.py", "trains and evaluates (5 s each, on a quiet machine)"),
    ("examples/predict.py", "--tta", "multi-scale + flip on a folder (7 s)"),
)


def _image(path: Path, h: int = 48, w: int = 64, bands: int = 3, seed: int = 0) -> None:
    array = np.random.default_rng(seed).integers(0, 256, (h, w, bands), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif" and bands != 3:
        import tifffile

        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)


def _dataset(root: Path, classes: tuple[str, ...] = ("background", "crack", "stain")) -> None:
    """A folder dataset in the README's layout: 4 training and 2 validation images of 48x64."""
    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            _image(root / "images" / split / f"{split}_{i}.jpg", seed=10 * i + len(split))
            mask = rng.integers(0, len(classes), (48, 64), dtype=np.uint8)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / "masks" / split / f"{split}_{i}.png")
    (root / "classes.json").write_text('["' + '", "'.join(classes) + '"]')


def _rasters(root: Path) -> None:
    """The README's rasters layout: one 96x128 GeoTIFF pair per split, Potsdam's six classes, nodata in the labels."""
    from raster_helpers import synthetic_pixels, write_geotiff

    from deeplabv3p.pretrained.zoo import DATASETS

    for split, seed in (("train", 1), ("val", 2)):
        pixels = synthetic_pixels(96, 128, 3, "uint8", seed=seed)
        labels = (pixels[:1] // 43).astype(np.uint8)
        labels[:, :4] = 255
        for folder, data in (("images", pixels), ("masks", labels)):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
            write_geotiff(root / folder / split / "ortho.tif", data, nodata=255 if folder == "masks" else None)
    (root / "classes.json").write_text(json.dumps(list(DATASETS["potsdam"]["classes"])))


def _layouts(cwd: Path) -> None:
    """The benchmark datasets as they unpack, and raw downloads for `prepare` (tests/layout_trees.py, tiny)."""
    import layout_trees as trees

    trees.make_cityscapes(cwd / "data" / "cityscapes")
    trees.make_ade20k(cwd / "data" / "ade")
    trees.raw_potsdam(cwd / "downloads" / "potsdam", tiles={"2_10": (512, 512)})
    trees.raw_vaihingen(cwd / "downloads" / "vaihingen", areas={"area1": (512, 512)})
    trees.raw_isaid(cwd / "downloads" / "iSAID", sizes={"train": {"P0001": (96, 128)}, "val": {"P0002": (96, 128)}})
    trees.raw_loveda(cwd / "downloads" / "loveda")


def _parity_checkpoint(path: Path) -> None:
    from safetensors.torch import load_file

    torch.save({"meta": {}, "state_dict": load_file(REPO / "tests/data/parity/r50_v1c_d8.safetensors")}, path)


def _downloaded(standins: Path) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        from safetensors.torch import load_file

        torch.save(load_file(standins / "r50-cityscapes-769" / "model.safetensors"), path)

    return make


EXAMPLE_SECTIONS = tuple(f"examples/{p.name}" for p in EXAMPLES)


# (path in the working folder, maker, why, the sections that get it or None for all): the files the blocks name,
# small, made in each section's working folder before its first block runs.
def files(standins: Path) -> tuple[tuple[str, Callable[[Path], None], str, tuple[str, ...] | None], ...]:
    photos = "a folder of images: two small ones"
    calib = "INT8 calibration images"
    saved = shutil.copytree
    return (
        ("street.png", _image, "the image the README segments: small, random", None),
        ("street.jpg", _image, "the image examples/predict.py segments", None),
        ("a.jpg", _image, photos, None),
        ("b.jpg", lambda p: _image(p, 40, 56, seed=1), photos, None),
        ("photos/p1.jpg", _image, photos, None),
        ("photos/p2.png", lambda p: _image(p, seed=2), photos, None),
        ("more_images/m1.jpg", _image, photos, None),
        ("calib_images/c1.jpg", _image, calib, None),
        ("calib_images/c2.jpg", lambda p: _image(p, seed=3), calib, None),
        ("calib_images/c3.jpg", lambda p: _image(p, seed=4), calib, None),
        ("scene.tif", lambda p: _image(p, bands=4), "a 4-band TIFF", None),
        ("tile.tif", lambda p: _image(p, 96, 128, bands=4, seed=5), "a larger 4-band TIFF", None),
        ("data", _dataset, "your dataset: 6 small images with masks", None),
        ("rasters", _rasters, "large rasters: a small GeoTIFF pair per split", ("Fine-tuning",)),
        ("my_data", _dataset, "your dataset: 6 small images with masks", None),
        ("data/cityscapes", lambda p: _layouts(p.parents[1]), "zoo layouts and raw downloads, fabricated", None),
        ("deeplabv3plus_r50-d8_512x1024_80k_cityscapes.pth", _parity_checkpoint, "an mmseg checkpoint, narrow", None),
        ("downloaded.pth", _downloaded(standins), "the tag's checkpoint downloaded by hand, narrow", None),
        ("deeplabv3p-demo/data", _dataset, "what `deeplabv3p demo` writes (200 images)", EXAMPLE_SECTIONS),
        (
            "deeplabv3p-demo/run/best",
            lambda p: saved(standins / "r18-cityscapes", p),
            "the demo's model",
            EXAMPLE_SECTIONS,
        ),
        ("runs/my_finetuned_model", lambda p: saved(standins / "r18-cityscapes", p), "a model", EXAMPLE_SECTIONS),
        ("examples", lambda p: p.symlink_to(REPO / "examples"), "the examples, as from the clone", EXAMPLE_SECTIONS),
    )


# -------------------------------------------------------------------------------------------------- the blocks


@dataclass
class Block:
    """One fenced block: where it is (file and the line of its first code line), its section and language."""

    source: str
    line: int
    section: str
    lang: str
    code: str
    index: int = 0  # position among the blocks of its section

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} ({self.section!r}, ```{self.lang} block)"


def readme_blocks(text: str | None = None) -> list[Block]:
    """The fenced blocks of README.md with their ``##`` section; the fence's language as written ('' when none)."""
    blocks: list[Block] = []
    section, lang, start, body = "", None, 0, []
    for number, line in enumerate((README.read_text() if text is None else text).splitlines(), 1):
        if lang is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif line.startswith("```"):
                lang, start, body = line[3:].strip(), number + 1, []
        elif line.startswith("```"):
            blocks.append(Block("README.md", start, section, lang, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    assert lang is None, f"README.md: the block opened at line {start - 1} is never closed"
    return _numbered(blocks)


def example_blocks() -> list[Block]:
    """The commands in each example's docstring (``python examples/...`` lines, continued by a backslash), as the
    docstring says them (``--help`` prints it), with the line of the source file where each starts."""
    blocks = []
    for path in EXAMPLES:
        source = path.read_text()
        lines = (ast.get_docstring(ast.parse(source), clean=True) or "").splitlines()
        number = 0
        while number < len(lines):
            if lines[number].strip().startswith("python examples/"):
                command = [lines[number]]
                while command[-1].endswith("\\"):
                    number += 1
                    command.append(lines[number])
                start = next(i for i, s in enumerate(source.splitlines(), 1) if command[0].strip()[:40] in s)
                code = textwrap.dedent("\n".join(command)) + "\n"
                blocks.append(Block(f"examples/{path.name}", start, f"examples/{path.name}", "bash", code))
            number += 1
    return _numbered(blocks)


def _numbered(blocks: list[Block]) -> list[Block]:
    counts: dict[str, int] = {}
    for block in blocks:
        block.index = counts.get(block.section, 0)
        counts[block.section] = block.index + 1
    return blocks


RUNNABLE = ("python", "bash")
BLOCKS = [b for b in readme_blocks() + example_blocks() if b.lang in RUNNABLE]


def substituted(block: Block, standins: Path) -> tuple[str, str | None]:
    """The block's code with its section's substitutions applied, and the reason to skip it (None: run it)."""
    code = block.code
    for sub in SUBSTITUTIONS:
        if block.section in sub.sections and sub.old in code:
            if sub.new == SKIP:
                return code, sub.why
            new = sub.new.replace("{standins}", str(standins)).replace("{parity_r50}", _parity_kwargs())
            code = code.replace(sub.old, new)
    return code, None


def _parity_kwargs() -> str:
    import parity

    _, kwargs = parity.model_kwargs("r50_v1c_d8")
    return "**" + repr(kwargs)


def _is_slow(block: Block) -> bool:
    return any(block.section == section and text in block.code for section, text, _ in SLOW)


# ------------------------------------------------------------------------------------------------ running them


@dataclass
class SectionRun:
    """The state of one section's blocks: its working folder, its Python namespace, which blocks ran."""

    cwd: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__readme__"})
    done: dict[int, str | None] = field(default_factory=dict)  # block index -> None if it passed, else the error


_RUNS: dict[str, SectionRun] = {}


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STANDIN_MODELS saved with save_pretrained, and the 769x769 tag's network (for downloaded.pth), narrow."""
    from nets import narrow_model

    folder = tmp_path_factory.mktemp("standins")
    for name, tag in STANDIN_MODELS.items():
        model = narrow_model(tag, num_classes=None, deep_stem=True)
        model.pretrained_cfg = model.pretrained_cfg.replace(test_scale=SMALL_SCALE)
        model.save_pretrained(folder / name)
    narrow_model("deeplabv3plus_r50_d8.cityscapes_769x769_80k", num_classes=None, deep_stem=True).save_pretrained(
        folder / "r50-cityscapes-769"
    )
    return folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, standins: Path) -> Iterator[None]:
    """HF_HUB_OFFLINE=1 (here and for the commands), the repo ``someone/my-model`` that the README's push_to_hub
    would make in the Hugging Face cache (a stand-in's files), and torch.hub's GitHub repo as this checkout.

    torch runs on one thread, here and in the commands: the stand-ins are so small that more threads only add
    overhead, and on a busy machine threads waiting for each other made a block 50x slower."""
    from huggingface_hub import constants
    from zoo_helpers import fill_hf_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    saved = standins / "r50-ade20k"
    repo = {p.name: p for p in saved.iterdir() if p.is_file()}
    fill_hf_cache(Path(constants.HF_HUB_CACHE), "someone/my-model", repo)
    monkeypatch.setenv("HF_HUB_CACHE", constants.HF_HUB_CACHE)
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda github, *args, **kwargs: str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _section_run(block: Block, standins: Path, tmp_path_factory: pytest.TempPathFactory) -> SectionRun:
    run = _RUNS.get(block.section)
    if run is None:
        cwd = tmp_path_factory.mktemp("readme")
        for path, make, _, sections in files(standins):
            if (sections is None or block.section in sections) and not (cwd / path).exists():
                make(cwd / path)
        run = _RUNS[block.section] = SectionRun(cwd)
        exec("import torch\nimport deeplabv3p\n", run.namespace)
    return run


def _run_python(block: Block, code: str, run: SectionRun) -> str | None:
    # Blank lines before the code make the traceback's line numbers README.md's.
    compiled = compile("\n" * (block.line - 1) + code, str(REPO / block.source), "exec")
    try:
        exec(compiled, run.namespace)
    except Exception:
        frames = traceback.format_exc().splitlines()
        return "\n".join(frames[-12:])
    return None


def _run_bash(block: Block, code: str, run: SectionRun) -> str | None:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": _pythonpath()}
    # The ERR trap names the failing command's line; the blank lines make $LINENO the README's.
    script = (
        f"trap 'echo \"{block.source}:$LINENO: exit status $?\" >&2' ERR\nset -e\n" + "\n" * (block.line - 3) + code
    )
    done = subprocess.run(["bash", "-c", script], cwd=run.cwd, env=env, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    output = f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-5000:]}"
    return f"exit status {done.returncode}\n{output}"


def _pythonpath() -> str:
    """This checkout first, so that commands import the deeplabv3p under test."""
    return os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def _run(
    block: Block, standins: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    run = _section_run(block, standins, tmp_path_factory)
    if block.index in run.done:
        return run.done[block.index]
    code, skip = substituted(block, standins)
    monkeypatch.chdir(run.cwd)
    error = None if skip else (_run_python if block.lang == "python" else _run_bash)(block, code, run)
    if error is not None:
        error = f"{block.where} failed.\n--- the block as run:\n{textwrap.indent(code, '    ')}--- error:\n{error}"
    run.done[block.index] = error
    return error


def _param(block: Block) -> Any:
    marks = [pytest.mark.slow] if _is_slow(block) else []
    return pytest.param(block, id=f"{block.source}:{block.line}", marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
@pytest.mark.usefixtures("offline")
def test_block_runs(
    block: Block, standins: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block runs, after the earlier blocks of its section that are not slow (it may use what they made)."""
    for earlier in BLOCKS:
        if earlier.section == block.section and earlier.index < block.index and not _is_slow(earlier):
            error = _run(earlier, standins, tmp_path_factory, monkeypatch)
            if error is not None:
                pytest.fail(f"{block.where} needs {earlier.where}, which failed:\n{error}", pytrace=False)
    _, skip = substituted(block, standins)
    if skip:
        pytest.skip(f"{block.where}: {skip}")
    error = _run(block, standins, tmp_path_factory, monkeypatch)
    if error is not None:
        pytest.fail(error, pytrace=False)


# --------------------------------------------------------------------------------------------- the table itself


@pytest.mark.parametrize("sub", SUBSTITUTIONS, ids=lambda s: f"{s.sections[0]}:{s.old[:40]}")
def test_every_substitution_applies(sub: Sub) -> None:
    """A substitution whose text is no longer in (a block of) each of its sections has rotted: update the table."""
    for section in sub.sections:
        blocks = [b for b in BLOCKS if b.section == section]
        assert blocks, f"no runnable block in section {section!r} (SUBSTITUTIONS: {sub.old!r})"
        assert any(sub.old in b.code for b in blocks), (
            f"SUBSTITUTIONS entry {sub.old!r} matches no block of {section!r} any more "
            f"(blocks at {[b.where for b in blocks]}): the README changed; update or remove the entry"
        )


@pytest.mark.parametrize("section, text, why", SLOW)
def test_every_slow_mark_applies(section: str, text: str, why: str) -> None:
    assert any(b.section == section and text in b.code for b in BLOCKS), (
        f"SLOW entry ({section!r}, {text!r}) matches no block any more: update the table"
    )


def test_the_extractor_reads_fences() -> None:
    """Languages, sections and first-line numbers as written; ```text and unlabelled fences are not run."""
    text = "# t\n## One\n```python\nx = 1\n```\n```text\nout\n```\n## Two\n```bash\necho hi\n```\n```\nDATA/\n```\n"
    blocks = readme_blocks(text)
    assert [(b.section, b.lang, b.line, b.index) for b in blocks] == [
        ("One", "python", 4, 0),
        ("One", "text", 7, 1),
        ("Two", "bash", 11, 0),
        ("Two", "", 14, 1),
    ]
    assert blocks[0].code == "x = 1\n"
    with pytest.raises(AssertionError, match="line 2 is never closed"):
        readme_blocks("## One\n```python\nx = 1\n")


def test_the_readme_has_blocks_to_run() -> None:
    """The extractor finds the README's blocks (a renamed fence language would silently run nothing)."""
    langs = [b.lang for b in readme_blocks()]
    assert langs.count("python") >= 8 and langs.count("bash") >= 10, langs
    assert {b.section for b in BLOCKS} >= {"Quick start", "Predict", "Fine-tuning", "examples/predict.py"}


def test_a_failing_block_names_its_line(tmp_path: Path) -> None:
    """The report of a broken block points at the README line: the traceback's for Python, the command's for bash."""
    run = SectionRun(tmp_path)
    python = Block("README.md", 40, "Predict", "python", "x = 1\ndeeplabv3p_renamed(x)\n")
    assert 'README.md", line 41' in (_run_python(python, python.code, run) or "")
    assert "NameError" in (_run_python(python, python.code, run) or "")
    bash = Block("README.md", 50, "Predict", "bash", "true\nfalse\ntrue\n")
    assert "README.md:51: exit status 1" in (_run_bash(bash, bash.code, run) or "")
    assert _run_bash(Block("README.md", 3, "Predict", "bash", "true\n"), "true\n", run) is None
