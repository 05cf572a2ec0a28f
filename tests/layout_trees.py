"""Tiny fabricated copies of the zoo datasets' folder trees (a few small images each), written by the tests.

Each ``make_*`` writes one layout under `root` and returns, per split, the samples in the order the reader must give
them: ``(image_path, expected_mask)`` with the mask already in the model's label space. The ``raw_*`` helpers write
the official downloads that ``deeplabv3p prepare`` converts (zips of TIFF tiles, colour-coded labels).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from deeplabv3p.train.layouts import CITYSCAPES_ID_TO_TRAIN_ID

Samples = dict[str, list[tuple[Path, np.ndarray]]]

# Raw ISPRS colours (RGB) in the order of the raw indices 0..6 (0 = boundary/unknown).
ISPRS_COLOURS = ((0, 0, 0), (255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
ISAID_COLOURS = (
    (0, 0, 0), (0, 0, 63), (0, 63, 63), (0, 63, 0), (0, 63, 127), (0, 63, 191), (0, 63, 255), (0, 127, 63),
    (0, 127, 127), (0, 0, 127), (0, 0, 191), (0, 0, 255), (0, 191, 127), (0, 127, 191), (0, 127, 255), (0, 100, 155),
)  # fmt: skip


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    image.save(path, **kwargs)
    return path


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reduce(raw: np.ndarray) -> np.ndarray:
    out = raw.astype(np.int64) - 1
    out[(raw == 0) | (raw == 255)] = 255
    return out


def cityscapes_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def make_cityscapes(
    root: Path, counts: dict[str, int] | None = None, train_ids: bool = False, seed: int = 0
) -> Samples:
    """``leftImg8bit/SPLIT/CITY/*_leftImg8bit.png`` + ``gtFine/.../*_gtFine_labelIds.png`` (+ ``_labelTrainIds``)."""
    rng, lut, out = _rng(seed), cityscapes_lut(), {}
    cities = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau"), "test": ("berlin",)}
    for split, n in (counts or {"train": 3, "val": 2}).items():
        samples = []
        for i in range(n):
            city = cities[split][i % len(cities[split])]
            stem = f"{city}_{i:06d}_{19 + i:06d}"
            image = _save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _image(rng, 12, 24))
            ids = rng.integers(0, 34, (12, 24), dtype=np.uint8)
            _save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
            if train_ids:
                _save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", lut[ids].astype(np.uint8))
            samples.append((image, lut[ids]))
        out[split] = sorted(samples, key=lambda s: str(s[0]))
    return out


def make_ade20k(root: Path, counts: dict[str, int] | None = None, seed: int = 1) -> Samples:
    """``ADEChallengeData2016/images/{training,validation}/*.jpg`` + ``annotations/...png`` (0 = other)."""
    rng, out, base = _rng(seed), {}, root / "ADEChallengeData2016"
    for split, n in (counts or {"training": 3, "validation": 2}).items():
        tag = "train" if split == "training" else "val"
        samples = []
        for i in range(n):
            stem = f"ADE_{tag}_{i + 1:08d}"
            image = _save(base / "images" / split / f"{stem}.jpg", _image(rng, 10, 14), quality=95)
            raw = rng.integers(0, 151, (10, 14), dtype=np.uint8)
            _save(base / "annotations" / split / f"{stem}.png", raw)
            samples.append((image, _reduce(raw)))
        out[split] = samples
    return out


def _palette_png(path: Path, indices: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    image.save(path)
    return path


def make_voc12aug(root: Path, seed: int = 2) -> Samples:
    """``VOCdevkit/VOC2012``: JPEGImages, palette SegmentationClass (255 borders), SegmentationClassAug, lists."""
    rng, base = _rng(seed), root / "VOCdevkit" / "VOC2012"
    lists = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"], "aug": ["2008_000002", "2008_000003"]}
    masks: dict[str, np.ndarray] = {}
    for names in lists.values():
        for name in names:
            _save(base / "JPEGImages" / f"{name}.jpg", _image(rng, 9, 11), quality=95)
    for name in lists["train"] + lists["val"]:
        raw = rng.integers(0, 21, (9, 11), dtype=np.uint8)
        raw[0, :] = 255  # VOC's void border
        masks[name] = raw
        _palette_png(base / "SegmentationClass" / f"{name}.png", raw)
    for name in lists["aug"] + lists["train"]:  # SBD also covers VOC train images; only aug.txt's are read from it
        raw = rng.integers(0, 21, (9, 11), dtype=np.uint8)
        masks.setdefault(name, raw)
        _save(base / "SegmentationClassAug" / f"{name}.png", raw)
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for split, names in lists.items():
        (sets / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    jpg = base / "JPEGImages"
    return {
        "train": [(jpg / f"{n}.jpg", masks[n].astype(np.int64)) for n in lists["train"] + lists["aug"]],
        "val": [(jpg / f"{n}.jpg", masks[n].astype(np.int64)) for n in lists["val"]],
    }


def make_pascal_context(root: Path, reduce: bool = False, seed: int = 3) -> Samples:
    """``VOCdevkit/VOC2010``: JPEGImages, SegmentationClassContext (indices 0..59) and the SegmentationContext lists."""
    rng, base = _rng(seed), root / "VOCdevkit" / "VOC2010"
    lists = {"train": ["2008_000002", "2008_000007"], "val": ["2008_000008"]}
    out = {}
    for split, names in lists.items():
        samples = []
        for name in names:
            image = _save(base / "JPEGImages" / f"{name}.jpg", _image(rng, 8, 10), quality=95)
            raw = rng.integers(0, 60, (8, 10), dtype=np.uint8)
            _save(base / "SegmentationClassContext" / f"{name}.png", raw)
            samples.append((image, _reduce(raw) if reduce else raw.astype(np.int64)))
        out[split] = samples
        sets = base / "ImageSets" / "SegmentationContext"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("\n".join(names) + "\n")
    return out


def make_img_ann(
    root: Path, num_raw: int, seg_suffix: str = ".png", reduce: bool = True, counts: dict[str, int] | None = None,
    names: tuple[str, ...] = ("2_10_0_0_512_512", "2_10_512_0_1024_512", "3_11_0_0_512_512"), seed: int = 4,
    palette: bool = False,
) -> Samples:  # fmt: skip
    """mmseg's converted ``img_dir/SPLIT/NAME.png`` + ``ann_dir/SPLIT/NAME{seg_suffix}`` (LoveDA, ISPRS, iSAID)."""
    rng, out = _rng(seed), {}
    for split, n in (counts or {"train": 3, "val": 2}).items():
        samples = []
        for name in names[:n]:
            image = _save(root / "img_dir" / split / f"{name}.png", _image(rng, 8, 8))
            raw = rng.integers(0, num_raw, (8, 8), dtype=np.uint8)
            label = root / "ann_dir" / split / f"{name}{seg_suffix}"
            _palette_png(label, raw) if palette else _save(label, raw)
            samples.append((image, _reduce(raw) if reduce else raw.astype(np.int64)))
        out[split] = sorted(samples, key=lambda s: str(s[0]))
    return out


def make_mapillary(root: Path, seed: int = 5) -> Samples:
    """``{training,validation}/images/ID.jpg`` + ``{split}/v1.2/labels/ID.png`` palette PNGs, raw 0..65."""
    rng, out = _rng(seed), {}
    for split, n in (("training", 2), ("validation", 1)):
        samples = []
        for i in range(n):
            stem = f"{'ab'[i]}{i:021d}"
            image = _save(root / split / "images" / f"{stem}.jpg", _image(rng, 8, 12), quality=95)
            raw = rng.integers(0, 66, (8, 12), dtype=np.uint8)
            raw[0, 0] = 65  # 'Unlabeled'
            _palette_png(root / split / "v1.2" / "labels" / f"{stem}.png", raw)
            expected = raw.astype(np.int64)
            expected[raw == 65] = 255
            samples.append((image, expected))
        out[split] = samples
    return out


# ----- raw downloads for `prepare` ----------------------------------------------------------------------------------
def _png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def colour_label(rng: np.random.Generator, h: int, w: int, colours: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """A blocky colour-coded label (8x8 blocks) with a few off-palette pixels."""
    blocks = rng.integers(0, len(colours), (-(-h // 8), -(-w // 8)))
    indices = np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:h, :w]
    rgb = np.asarray(colours, dtype=np.uint8)[indices]
    rgb[1, 1] = (12, 200, 7)  # off the palette: the converters send it to index 0
    return rgb


def raw_potsdam(root: Path, tiles: dict[str, tuple[int, int]] | None = None, seed: int = 6) -> dict[str, tuple]:
    """``2_Ortho_RGB.zip`` (``2_Ortho_RGB/top_potsdam_I_J_RGB.tif``) and ``5_Labels_all_noBoundary.zip``
    (``top_potsdam_I_J_label_noBoundary.tif``) with small tiles; returns tile -> (image, colour label)."""
    rng = _rng(seed)
    tiles = tiles or {"2_10": (700, 1100), "2_13": (512, 600)}
    root.mkdir(parents=True, exist_ok=True)
    made = {}
    with (
        zipfile.ZipFile(root / "2_Ortho_RGB.zip", "w") as images,
        zipfile.ZipFile(root / "5_Labels_all_noBoundary.zip", "w") as labels,
    ):
        for tile, (h, w) in tiles.items():
            image, label = _image(rng, h, w), colour_label(rng, h, w, ISPRS_COLOURS)
            images.writestr(f"2_Ortho_RGB/top_potsdam_{tile}_RGB.tif", _png_bytes(image, "TIFF"))
            images.writestr(f"2_Ortho_RGB/top_potsdam_{tile}_RGB.tfw", b"0.05\n")
            labels.writestr(f"top_potsdam_{tile}_label_noBoundary.tif", _png_bytes(label, "TIFF"))
            made[tile] = (image, label)
    return made


def raw_vaihingen(root: Path, areas: dict[str, tuple[int, int]] | None = None, seed: int = 7) -> dict[str, tuple]:
    """``ISPRS_semantic_labeling_Vaihingen.zip`` (``top/top_mosaic_09cm_areaK.tif``) and the eroded ground truth
    zip (``top_mosaic_09cm_areaK_noBoundary.tif``)."""
    rng = _rng(seed)
    areas = areas or {"area1": (600, 530), "area2": (520, 700)}
    root.mkdir(parents=True, exist_ok=True)
    made = {}
    gt_name = "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip"
    with (
        zipfile.ZipFile(root / "ISPRS_semantic_labeling_Vaihingen.zip", "w") as images,
        zipfile.ZipFile(root / gt_name, "w") as labels,
    ):
        for area, (h, w) in areas.items():
            image, label = _image(rng, h, w), colour_label(rng, h, w, ISPRS_COLOURS)
            images.writestr(f"top/top_mosaic_09cm_{area}.tif", _png_bytes(image, "TIFF"))
            images.writestr(f"gts_for_participants/top_mosaic_09cm_{area}.tif", _png_bytes(label, "TIFF"))
            labels.writestr(f"top_mosaic_09cm_{area}_noBoundary.tif", _png_bytes(label, "TIFF"))
            made[area] = (image, label)
    return made


def raw_isaid(root: Path, sizes: dict[str, dict[str, tuple[int, int]]] | None = None, seed: int = 8) -> dict:
    """``iSAID/{train,val}/images/part1.zip`` (``images/P*.png``), ``{split}/Semantic_masks/images.zip``
    (``images/P*_instance_color_RGB.png``) and ``test/images/part1.zip``."""
    rng = _rng(seed)
    sizes = sizes or {
        "train": {"P0001": (1000, 1500), "P0002": (700, 900)},
        "val": {"P0003": (600, 500)},
        "test": {"P0004": (300, 400)},
    }
    made: dict = {}
    for split, images in sizes.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root / split / "images" / "part1.zip", "w") as zf:
            for name, (h, w) in images.items():
                image = _image(rng, h, w)
                zf.writestr(f"images/{name}.png", _png_bytes(image))
                made[(split, name)] = [image, None]
        if split == "test":
            continue
        (root / split / "Semantic_masks").mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root / split / "Semantic_masks" / "images.zip", "w") as zf:
            for name, (h, w) in images.items():
                label = colour_label(rng, h, w, ISAID_COLOURS)
                zf.writestr(f"images/{name}_instance_color_RGB.png", _png_bytes(label))
                made[(split, name)][1] = label
    return made


def raw_loveda(root: Path, seed: int = 9) -> dict:
    """``Train.zip``, ``Val.zip``, ``Test.zip`` holding ``{Train,Val,Test}/{Rural,Urban}/{images_png,masks_png}``."""
    rng = _rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    made: dict = {}
    numbers = {
        "Train": {"Rural": (1, 2), "Urban": (3,)},
        "Val": {"Rural": (4,), "Urban": (5,)},
        "Test": {"Rural": (6,), "Urban": (7,)},
    }
    for folder, places in numbers.items():
        with zipfile.ZipFile(root / f"{folder}.zip", "w") as zf:
            for place, ids in places.items():
                for n in ids:
                    image, mask = _image(rng, 16, 16), rng.integers(0, 8, (16, 16), dtype=np.uint8)
                    zf.writestr(f"{folder}/{place}/images_png/{n}.png", _png_bytes(image))
                    if folder != "Test":
                        zf.writestr(f"{folder}/{place}/masks_png/{n}.png", _png_bytes(mask))
                    made[(folder.lower(), n)] = (image, mask if folder != "Test" else None)
    return made


def pixel_digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path) -> sha256 of its decoded pixels (shape, dtype and values), so files
    that hold the same pixels in another container (BMP under a .png name, L vs P) compare equal."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with Image.open(path) as img:
            array = np.asarray(img)
        header = f"{array.shape}:{array.dtype}:".encode()
        digests[path.relative_to(folder).as_posix()] = hashlib.sha256(header + array.tobytes()).hexdigest()
    return digests
