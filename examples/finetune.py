"""Fine-tune DeepLabV3+ on your own dataset, evaluate it and segment a few images with it.

Dataset layout (masks: one class index per pixel, same name as the image)::

    DATA/classes.json            ["background", "crack", "stain"]   (or {"classes": [...], "palette": [[r,g,b], ...]})
    DATA/images/train/*.jpg      DATA/masks/train/*.png
    DATA/images/val/*.jpg        DATA/masks/val/*.png

Try it offline on the demo's synthetic data (``deeplabv3p demo`` writes it to ``deeplabv3p-demo/data``)::

    python examples/finetune.py --data deeplabv3p-demo/data --model deeplabv3plus --encoder resnet18 --iters 200 \\
        --crop-size 128 --batch-size 8

With published weights (downloaded once from the Hugging Face Hub or OpenMMLab)::

    python examples/finetune.py --data my_data --model deeplabv3plus_r50_d8 --pretrained cityscapes --iters 2000

Several GPUs: ``torchrun --nproc_per_node 4 examples/finetune.py ...`` (the batch size is per GPU).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import deeplabv3p
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.metrics import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--model", default="deeplabv3plus_r50_d8", help="architecture, ARCH.TAG or a model folder")
    parser.add_argument("--pretrained", help="weights to start from, e.g. cityscapes, ade20k, or a file")
    parser.add_argument("--encoder", help="timm encoder for the generic 'deeplabv3plus' architecture")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=512)
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision on the GPU")
    parser.add_argument("--out", default="runs/finetune")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    args = parser.parse_args()

    # 1. The data: the class names (and palette) come from classes.json.
    train = SegmentationDataset(args.data, split="train")
    val = SegmentationDataset(args.data, split="val")
    main_process = os.environ.get("RANK", "0") == "0"
    if main_process:
        print(f"train: {train}\nval:   {val}")

    # 2. The model: a new classifier for our classes on top of the chosen weights.
    extra = {"encoder": args.encoder} if args.encoder else {}
    model = deeplabv3p.create_model(args.model, pretrained=args.pretrained, num_classes=train.num_classes, **extra)

    # 3. Train with mmseg's recipe (SGD 0.01, PolyLR, aux loss 0.4, random resize/crop/flip/photometric).
    result = deeplabv3p.train.fit(
        model,
        train,
        val,
        iters=args.iters,
        batch_size=args.batch_size,
        crop_size=(args.crop_size, args.crop_size),
        amp=args.amp,
        out=args.out,
        resume=args.resume,
    )
    if not main_process:
        return

    # 4. The best model is a self-contained folder: reload it, evaluate it, segment with it.
    best = deeplabv3p.create_model(str(result.best_path))
    metrics = deeplabv3p.train.evaluate(best, val)
    print(format_table(metrics))
    overlays = Path(args.out) / "overlays"
    overlays.mkdir(parents=True, exist_ok=True)
    for image_path, _ in val.samples[:4]:
        best.predict(image_path).save(overlays / f"{image_path.stem}.png", kind="overlay")
    print(f"best model: {result.best_path} (push it with best.push_to_hub('you/name')); overlays: {overlays}")


if __name__ == "__main__":
    main()
