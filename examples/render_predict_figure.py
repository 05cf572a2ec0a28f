"""Render the README's predict picture: input images beside their predicted overlays, with a colour legend.

It must be made with a model that has learned something; e.g. the fine-tuning demo's model on held-out images
the demo wrote (synthetic, so free to redistribute):

    python examples/render_predict_figure.py deeplabv3p-demo/data/images/val/ --model deeplabv3p-demo/run/best \
        --count 4 --out examples/predict_example.jpg

``--model`` / ``--pretrained`` / ``--model-kwargs`` are passed to `deeplabv3p.create_model` as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import deeplabv3p
from deeplabv3p.cli import parse_model_kwargs
from deeplabv3p.inference.result import save_image_atomic

GAP = 8
BACKGROUND = (255, 255, 255)


def _legend(classes: list[str], colors: list[tuple[int, int, int]], width: int) -> Image.Image:
    font = ImageFont.load_default(size=14)
    swatch, pad = 14, 6
    entries = []
    for name, color in zip(classes, colors):
        text_w = int(font.getlength(name))
        entries.append((name, color, swatch + pad + text_w + 3 * pad))
    rows, x = [[]], 0
    for entry in entries:
        if x + entry[2] > width and rows[-1]:
            rows.append([])
            x = 0
        rows[-1].append(entry)
        x += entry[2]
    legend = Image.new("RGB", (width, len(rows) * (swatch + pad) + pad), BACKGROUND)
    draw = ImageDraw.Draw(legend)
    for r, row in enumerate(rows):
        x, y = 0, pad + r * (swatch + pad)
        for name, color, w in row:
            draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(color), outline=(0, 0, 0))
            draw.text((x + swatch + pad, y - 1), name, fill=(0, 0, 0), font=font)
            x += w
    return legend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="held-out image files or folders")
    parser.add_argument("--model", required=True, help="trained model folder (save_pretrained), ARCH.TAG or ARCH")
    parser.add_argument("--pretrained", default=True, help="weights for an ARCH: tag or checkpoint file")
    parser.add_argument("--model-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--count", type=int, default=4, help="how many images to show")
    parser.add_argument("--tile", type=int, default=256, help="height of each picture in pixels")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--out", required=True, help="picture file (.png or .jpg)")
    args = parser.parse_args()

    overrides = parse_model_kwargs(args.model_kwargs)
    model = deeplabv3p.create_model(args.model, pretrained=args.pretrained, **overrides)

    rows, present = [], set()
    stream = deeplabv3p.predict_iter(model, args.images)
    for _, result in zip(range(args.count), stream):
        pair = []
        for picture in (result.overlay(alpha=0.0), result.overlay(alpha=args.alpha)):
            w = round(picture.width * args.tile / picture.height)
            pair.append(picture.resize((w, args.tile), Image.Resampling.LANCZOS))
        rows.append(pair)
        present.update(int(c) for c in np.unique(result.labels))
    if not rows:
        raise SystemExit("no images to show")
    width = max(a.width + GAP + b.width for a, b in rows)
    legend = _legend(
        [result.classes[c] for c in sorted(present)], [tuple(result.palette[c]) for c in sorted(present)], width
    )
    height = len(rows) * (args.tile + GAP) + legend.height
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    for i, (a, b) in enumerate(rows):
        y = i * (args.tile + GAP)
        canvas.paste(a, (0, y))
        canvas.paste(b, (a.width + GAP, y))
    canvas.paste(legend, (0, len(rows) * (args.tile + GAP)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image_atomic(canvas, out)
    print(f"wrote {out} ({len(rows)} images, classes: {', '.join(result.classes[c] for c in sorted(present))})")


if __name__ == "__main__":
    main()
