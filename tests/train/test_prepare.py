"""`prepare`: the converters reproduce mmseg's own scripts on fabricated downloads (names and pixels, from the goldens
in tests/data/prepare_goldens.json), resume, refuse bad input before writing, and feed `SegmentationDataset`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from layout_trees import (
    ISPRS_COLOURS,
    make_cityscapes,
    pixel_digests,
    raw_isaid,
    raw_loveda,
    raw_potsdam,
    raw_vaihingen,
)
from PIL import Image

from deeplabv3p.train import prepare as prepare_module
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.prepare import PrepareReport, isaid_windows, isprs_boxes, isprs_indices, prepare

GOLDENS = json.loads((DATA / "prepare_goldens.json").read_text())
RAW = {"potsdam": raw_potsdam, "vaihingen": raw_vaihingen, "isaid": raw_isaid, "loveda": raw_loveda}


@pytest.mark.parametrize("name", sorted(RAW))
def test_prepare_matches_mmsegs_converter(tmp_path: Path, name: str) -> None:
    RAW[name](tmp_path / "raw")
    report = prepare(name, tmp_path / "raw", tmp_path / "out", progress=False)
    assert pixel_digests(tmp_path / "out") == GOLDENS[name]
    assert sum(report.written.values()) == len(GOLDENS[name]) and not report.skipped
    again = prepare(name, tmp_path / "raw", tmp_path / "out", progress=False)  # resumable: nothing to redo
    assert not again.written and sum(again.skipped.values()) == len(GOLDENS[name])


def test_potsdam_patches_are_what_the_reader_reads(tmp_path: Path) -> None:
    tiles = raw_potsdam(tmp_path / "raw")
    prepare("potsdam", tmp_path / "raw", tmp_path / "out", progress=False)
    ds = SegmentationDataset(tmp_path / "out", "train", layout="potsdam")
    assert len(ds) == 6  # tile 2_10 (train) is 1100x700: 3 x 2 patches
    image, label = tiles["2_10"]
    names = [p.name for p, _ in ds.samples]
    i = names.index("2_10_588_188_1100_700.png")  # the corner patch, flush with the right and bottom borders
    patch, mask = ds.load(i)
    np.testing.assert_array_equal(patch, image[188:700, 588:1100])
    raw_index = isprs_indices(label[188:700, 588:1100]).astype(np.int64)
    np.testing.assert_array_equal(mask, np.where(raw_index == 0, 255, raw_index - 1))
    assert len(SegmentationDataset(tmp_path / "out", "val", layout="potsdam")) == 2  # 2_13 is a val tile


def test_isprs_geometry_and_colour_key() -> None:
    assert isprs_boxes(6000, 6000)[-1] == (5488, 5488, 6000, 6000) and len(isprs_boxes(6000, 6000)) == 144
    assert [b[0] for b in isprs_boxes(512, 1100)] == [0, 512, 588]
    with pytest.raises(ValueError, match="smaller than the 512x512"):
        isprs_boxes(500, 900)
    colours = np.array([ISPRS_COLOURS], dtype=np.uint8)
    assert isprs_indices(colours).tolist() == [[0, 1, 2, 3, 4, 5, 6]]
    # mmseg matches by the key 4R + 3G + 2B, so an off-palette colour with a palette colour's key takes its class
    assert isprs_indices(np.array([[[0, 170, 0], [1, 1, 1]]], dtype=np.uint8)).tolist() == [[2, 0]]
    assert isaid_windows(896, 500) == [(0, 896, 0, 896)]  # padded (mmseg slices from a negative start here)
    assert isaid_windows(1000, 1500) == [(y, y + 896, x, x + 896) for x in (0, 512, 604) for y in (0, 104)]


def test_prepare_refuses_incomplete_downloads_before_writing(tmp_path: Path) -> None:
    raw_potsdam(tmp_path / "raw")
    with zipfile.ZipFile(tmp_path / "raw" / "5_Labels_all_noBoundary.zip", "w") as zf:  # labels of one tile only
        zf.writestr("top_potsdam_2_10_label_noBoundary.tif", b"")
    with pytest.raises(FileNotFoundError, match=r"have no label tile.*\['2_13'\]"):
        prepare("potsdam", tmp_path / "raw", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="no vaihingen tiles"):
        prepare("vaihingen", tmp_path / "raw", tmp_path / "out2", progress=False)
    with pytest.raises(ValueError, match="nothing to prepare for 'ade20k'"):
        prepare("ade20k", tmp_path / "raw", tmp_path / "out", progress=False)


def test_prepare_refuses_a_four_channel_tile(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    Image.new("RGBA", (512, 512)).save(raw / "top_potsdam_2_10_RGBIR.tif")
    Image.new("RGB", (512, 512)).save(raw / "top_potsdam_2_10_label_noBoundary.tif")
    with pytest.raises(ValueError, match=r"top_potsdam_2_10_RGBIR\.tif is a RGBA image.*2_Ortho_RGB\.zip"):
        prepare("potsdam", raw, tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").rglob("*.png"))


def test_resume_after_an_interruption_finishes_the_missing_patches(tmp_path: Path) -> None:
    raw_isaid(tmp_path / "raw")
    prepare("isaid", tmp_path / "raw", tmp_path / "out", progress=False)
    removed = sorted((tmp_path / "out" / "ann_dir" / "train").iterdir())[:3]
    for path in removed:
        path.unlink()
    report = prepare("isaid", tmp_path / "raw", tmp_path / "out", progress=False)
    assert report.written == {"ann_dir/train": 3}
    assert pixel_digests(tmp_path / "out") == GOLDENS["isaid"]
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]  # no temporaries left


def test_cityscapes_train_ids_in_place(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path)
    report = prepare("cityscapes", tmp_path, progress=False)
    assert report.written == {"gtFine/train": 3, "gtFine/val": 2}
    ds = SegmentationDataset(tmp_path, "train", layout="cityscapes")
    assert all(str(m).endswith("_gtFine_labelTrainIds.png") for _, m in ds.samples) and ds.label_map is None
    for i, (_, mask) in enumerate(expected["train"]):
        np.testing.assert_array_equal(ds.load(i)[1], mask)
    with pytest.raises(ValueError, match="prepared in place"):
        prepare("cityscapes", tmp_path, tmp_path / "elsewhere", progress=False)


def test_write_once_writes_a_missing_file_and_counts_both(tmp_path: Path) -> None:
    report = PrepareReport("x", tmp_path)
    calls: list[Path] = []
    for _ in range(2):
        report.write_once("a", tmp_path / "f.txt", lambda path: (calls.append(path), path.write_text("x")))
    assert calls == [tmp_path / "f.txt"] and report.written == {"a": 1} and report.skipped == {"a": 1}


def test_a_resumed_run_reads_only_the_sources_of_missing_patches(tmp_path: Path, monkeypatch) -> None:
    raw_potsdam(tmp_path / "raw")
    prepare("potsdam", tmp_path / "raw", tmp_path / "out", progress=False)
    next((tmp_path / "out" / "ann_dir" / "val").iterdir()).unlink()
    read: list[str] = []
    original = prepare_module._read_rgb

    def recording(member, kind: str, fix: str) -> np.ndarray:
        read.append(kind)
        return original(member, kind, fix)

    monkeypatch.setattr(prepare_module, "_read_rgb", recording)
    report = prepare("potsdam", tmp_path / "raw", tmp_path / "out", progress=False)
    assert read == ["label"] and report.written == {"ann_dir/val": 1}
    assert pixel_digests(tmp_path / "out") == GOLDENS["potsdam"]


def test_isaid_mask_of_another_size_is_refused_before_its_patches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "raw" / "val" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "val" / "Semantic_masks").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (600, 500, 3), np.uint8)).save(tmp_path / "raw/val/images/P0003.png")
    Image.new("RGB", (400, 600)).save(tmp_path / "raw/val/Semantic_masks/P0003_instance_color_RGB.png")
    pattern = r"iSAID P0003: the mask .* is 600x400 but the image 600x500 \(height x width\)"
    with pytest.raises(ValueError, match=pattern):
        prepare("isaid", tmp_path / "raw", tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").rglob("*.png"))
