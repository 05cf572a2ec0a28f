"""Check that `deeplabv3p.inference.resize.resize_image` is bit-identical to OpenCV's bilinear resize (what mmseg uses).

OpenCV is not a dependency of deeplabv3p; install it in a private environment to run this:

    python -m pip install --target .venv-cv2 opencv-python-headless
    PYTHONPATH=.venv-cv2:. python benchmarks/check_cv2_resize.py --cases 300

``--write-fixture PATH`` also stores a few small cases (inputs and OpenCV's outputs) for the test suite
(``tests/data/cv2_resize.npz``), so the tests check the arithmetic without OpenCV installed.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from deeplabv3p.inference.resize import rescale_size, resize_image

# (input h, w) -> (output h, w): upscales, downscales, an exact 2x downscale (OpenCV switches to area
# averaging there), one-pixel growth (Cityscapes 2048x1024 -> 2049x1025) and thin images.
FIXTURE_CASES = [
    ((13, 17), (20, 9)),
    ((30, 40), (15, 20)),
    ((23, 31), (37, 45)),
    ((32, 64), (33, 65)),
    ((41, 29), (17, 60)),
    ((1, 9), (3, 5)),
    ((50, 3), (7, 11)),
]


def _random_case(rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    h, w = (int(v) for v in rng.integers(2, 600, 2))
    if rng.random() < 0.3:
        return (h, w), tuple(int(v) for v in rng.integers(1, 900, 2))
    return (h, w), rescale_size(h, w, float(rng.uniform(0.25, 2.5)))


def _ours(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return resize_image(torch.from_numpy(image).permute(2, 0, 1), size).permute(1, 2, 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300, help="random size pairs to compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-fixture", metavar="PATH", help="write the small test fixture to PATH (.npz)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    mismatched, float_err = 0, 0.0
    for _ in range(args.cases):
        src, dst = _random_case(rng)
        image = rng.integers(0, 256, size=(*src, 3), dtype=np.uint8)
        expected = cv2.resize(image, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
        mismatched += bool((_ours(image, dst) != expected).any())
        as_float = image.astype(np.float32)
        expected_f = cv2.resize(as_float, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
        float_err = max(float_err, float(np.abs(_ours(as_float, dst) - expected_f).max()))
    print(f"OpenCV {cv2.__version__}: {args.cases} random uint8 resizes, {mismatched} not bit-identical")
    print(f"float32 resizes: max abs difference {float_err:.3g} on the 0..255 scale")

    if args.write_fixture:
        arrays = {}
        for i, (src, dst) in enumerate(FIXTURE_CASES):
            image = rng.integers(0, 256, size=(*src, 3), dtype=np.uint8)
            arrays[f"in_{i}"] = image
            arrays[f"out_{i}"] = cv2.resize(image, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
        np.savez_compressed(args.write_fixture, opencv_version=np.array(cv2.__version__), **arrays)
        print(f"wrote {len(FIXTURE_CASES)} cases to {args.write_fixture}")


if __name__ == "__main__":
    main()
