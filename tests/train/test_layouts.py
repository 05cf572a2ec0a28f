"""`SegmentationDataset(root, split, layout=...)` on tiny fabricated trees of every zoo layout: pairing, label mapping,
reduce_zero_label, split lists, the label audit and the errors for a wrong root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from layout_trees import (
    make_ade20k,
    make_cityscapes,
    make_img_ann,
    make_mapillary,
    make_pascal_context,
    make_voc12aug,
)
from PIL import Image

from deeplabv3p.pretrained.zoo import DATASETS
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.layouts import LAYOUTS, ZooLayout


def _check(ds: SegmentationDataset, expected: list[tuple[Path, np.ndarray]], dataset: str) -> None:
    assert [p for p, _ in ds.samples] == [p for p, _ in expected]
    for i, (image_path, mask) in enumerate(expected):
        image, labels = ds.load(i)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert np.array_equal(image, np.asarray(Image.open(image_path).convert("RGB")))
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, mask)
    assert ds.classes == DATASETS[dataset]["classes"] and ds.palette == DATASETS[dataset]["palette"]
    assert ds.name == dataset and ds.audit_labels() == []


def test_every_zoo_dataset_has_a_layout() -> None:
    zoo = {name: layout for name, layout in LAYOUTS.items() if isinstance(layout, ZooLayout)}
    assert set(DATASETS) == set(zoo) and set(LAYOUTS) == {"folder", "rasters", "mmseg", *DATASETS}
    assert all(layout.counts and layout.dataset == name for name, layout in zoo.items())


@pytest.mark.parametrize("train_ids", [False, True])
def test_cityscapes_maps_label_ids_or_reads_train_ids(tmp_path: Path, train_ids: bool) -> None:
    expected = make_cityscapes(tmp_path, train_ids=train_ids)
    for split in ("train", "val"):
        ds = SegmentationDataset(tmp_path, split, layout="cityscapes")
        _check(ds, expected[split], "cityscapes")
        suffix = "_gtFine_labelTrainIds.png" if train_ids else "_gtFine_labelIds.png"
        assert all(str(mask).endswith(suffix) for _, mask in ds.samples)
        assert (ds.label_map is None) == train_ids
    assert SegmentationDataset(tmp_path, "val", layout="cityscapes").official_count == 500


def test_cityscapes_with_some_train_ids_uses_label_ids_for_all(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path, train_ids=True)
    next((tmp_path / "gtFine" / "train").rglob("*_labelTrainIds.png")).unlink()
    ds = SegmentationDataset(tmp_path, "train", layout="cityscapes")
    assert all(str(mask).endswith("_gtFine_labelIds.png") for _, mask in ds.samples)
    _check(ds, expected["train"], "cityscapes")


def test_cityscapes_label_ids_saved_as_train_ids_is_caught(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train_ids=True)
    wrong = next((tmp_path / "gtFine" / "val").rglob("*_labelTrainIds.png"))
    ids = wrong.with_name(wrong.name.replace("TrainIds", "Ids"))
    Image.open(ids).save(wrong)  # the classic mistake: labelIds copied under the trainIds name
    ds = SegmentationDataset(tmp_path, "val", layout="cityscapes")
    problems = ds.audit_labels()
    assert len(problems) == 1 and str(wrong) in problems[0] and "labelIds saved as _labelTrainIds" in problems[0]
    with pytest.raises(ValueError, match=r"outside the 19 classes.*labelIds saved as _labelTrainIds"):
        ds.load([str(p[1]) for p in ds.samples].index(str(wrong)))


def test_cityscapes_train_ids_given_as_label_ids_is_caught(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    path = next((tmp_path / "gtFine" / "val").rglob("*_labelIds.png"))
    Image.fromarray(np.full((12, 24), 255, np.uint8)).save(path)
    problems = SegmentationDataset(tmp_path, "val", layout="cityscapes").audit_labels()
    assert len(problems) == 1 and "[255]" in problems[0] and "labelIds run from 0 to 33" in problems[0]


def test_ade20k_reduces_zero_and_takes_split_aliases(tmp_path: Path) -> None:
    expected = make_ade20k(tmp_path)
    for alias, split in (("train", "training"), ("validation", "validation")):
        for root in (tmp_path, tmp_path / "ADEChallengeData2016"):  # the folder itself or its parent
            ds = SegmentationDataset(root, alias, layout="ade20k")
            _check(ds, expected[split], "ade20k")
    assert SegmentationDataset(tmp_path, "val", layout="ade20k").official_count == 2000


def test_voc12aug_train_is_voc_train_then_sbd_aug(tmp_path: Path) -> None:
    expected = make_voc12aug(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        ds = SegmentationDataset(root, "train", layout="voc12aug")
        _check(ds, expected["train"], "voc12aug")
    masks = [str(m) for _, m in ds.samples]
    assert ["SegmentationClassAug" in m for m in masks] == [False, False, True, True]
    val = SegmentationDataset(tmp_path, "val", layout="voc12aug")
    _check(val, expected["val"], "voc12aug")
    assert (val.load(0)[1][0] == 255).all()  # the void border stays ignored
    assert val.official_count == 1449


@pytest.mark.parametrize("name", ["pascal_context", "pascal_context_59"])
def test_pascal_context_60_and_59(tmp_path: Path, name: str) -> None:
    expected = make_pascal_context(tmp_path, reduce=name == "pascal_context_59")
    for split in ("train", "val"):
        _check(SegmentationDataset(tmp_path, split, layout=name), expected[split], name)


@pytest.mark.parametrize(
    ("name", "num_raw", "seg_suffix", "reduce"),
    [("loveda", 8, ".png", True), ("potsdam", 7, ".png", True), ("vaihingen", 7, ".png", True),
     ("isaid", 16, "_instance_color_RGB.png", False)],
)  # fmt: skip
def test_converted_img_dir_ann_dir_layouts(tmp_path: Path, name: str, num_raw: int, seg_suffix: str, reduce: bool):
    expected = make_img_ann(tmp_path, num_raw, seg_suffix, reduce, palette=name == "isaid")
    for split in ("train", "val"):
        _check(SegmentationDataset(tmp_path, split, layout=name), expected[split], name)


def test_isaid_reads_bmp_patches_named_png(tmp_path: Path) -> None:
    expected = make_img_ann(tmp_path, 16, "_instance_color_RGB.png", reduce=False, counts={"train": 1})
    path, _ = expected["train"][0]
    Image.open(path).save(path, format="BMP")  # what mmseg's isaid converter writes under the .png name
    _check(SegmentationDataset(tmp_path, "train", layout="isaid"), expected["train"], "isaid")


def test_mapillary_ignores_unlabeled(tmp_path: Path) -> None:
    expected = make_mapillary(tmp_path)
    for split in ("train", "validation"):
        ds = SegmentationDataset(tmp_path, split, layout="mapillary_v1_65")
        _check(ds, expected["training" if split == "train" else split], "mapillary_v1_65")
        assert ds.num_classes == 65 and ds.load(0)[1][0, 0] == 255


def test_generic_mmseg_layout(tmp_path: Path) -> None:
    expected = make_img_ann(tmp_path, 7, reduce=True)
    ds = SegmentationDataset(tmp_path, "val", layout="mmseg", dataset="potsdam")
    _check(ds, expected["val"], "potsdam")
    (tmp_path / "classes.json").write_text('["a", "b", "c", "d", "e", "f", "g"]')
    plain = SegmentationDataset(tmp_path, "val", layout="mmseg")
    assert plain.classes == tuple("abcdefg") and not plain.reduce_zero_label and plain.name == tmp_path.name
    with pytest.raises(ValueError, match="img_suffix"):
        Image.new("RGB", (8, 8)).save(tmp_path / "img_dir" / "val" / "x.jpg")
        SegmentationDataset(tmp_path, "val", layout="mmseg")
    assert len(SegmentationDataset(tmp_path, "train", layout="mmseg", img_suffix=".png", classes=7)) == 3


# ----- bad input ---------------------------------------------------------------------------------------------------
def test_wrong_root_says_what_was_expected_and_found(tmp_path: Path) -> None:
    make_ade20k(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        SegmentationDataset(tmp_path, "val", layout="cityscapes")
    message = str(err.value)
    assert "not a cityscapes dataset folder" in message and "leftImg8bit/SPLIT/CITY" in message
    assert "ADEChallengeData2016/" in message  # what is there
    with pytest.raises(FileNotFoundError, match="prepare potsdam RAW OUT"):
        SegmentationDataset(tmp_path, "train", layout="potsdam")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SegmentationDataset(tmp_path / "nowhere", "val", layout="ade20k")
    with pytest.raises(ValueError, match="unknown dataset layout 'cityscape'"):
        SegmentationDataset(tmp_path, "val", layout="cityscape")


def test_missing_split_and_split_list(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, counts={"train": 1})
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val.*does not exist.*holds train/"):
        SegmentationDataset(tmp_path, "val", layout="cityscapes")
    with pytest.raises(ValueError, match=r"no split 'testing'.*\['test', 'train', 'val'\]"):
        SegmentationDataset(tmp_path, "testing", layout="cityscapes")
    make_voc12aug(tmp_path / "voc")
    (tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"split list .*aug\.txt' does not exist"):
        SegmentationDataset(tmp_path / "voc", "train", layout="voc12aug")


def test_image_without_label_names_the_file(tmp_path: Path) -> None:
    make_ade20k(tmp_path)
    label = tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images have no label.*ADE_val_00000002\.png"):
        SegmentationDataset(tmp_path, "val", layout="ade20k")
    make_voc12aug(tmp_path / "voc")
    (tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000033.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"images named in .*val\.txt' do not exist.*2007_000033\.jpg"):
        SegmentationDataset(tmp_path / "voc", "val", layout="voc12aug")


def test_colour_label_and_out_of_range_labels(tmp_path: Path) -> None:
    expected = make_img_ann(tmp_path, 7)
    colour = expected["train"][0][0].parent.parent.parent / "ann_dir" / "train" / expected["train"][0][0].name
    Image.new("RGB", (8, 8), (255, 0, 0)).save(colour)
    out_of_range = colour.with_name(expected["train"][1][0].name)
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(out_of_range)
    ds = SegmentationDataset(tmp_path, "train", layout="potsdam")
    problems = ds.audit_labels()
    assert len(problems) == 2
    assert str(colour) in problems[0] and "colour-coded" in problems[0] and "prepare potsdam" in problems[0]
    assert str(out_of_range) in problems[1] and "[8]" in problems[1]  # 9 after reduce_zero_label
    with pytest.raises(ValueError, match="colour-coded"):
        ds.load(0)


def test_named_layouts_refuse_mmseg_options(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    with pytest.raises(ValueError, match=r"\['classes'\] apply to the 'folder' and 'mmseg' layouts only"):
        SegmentationDataset(tmp_path, "val", layout="cityscapes", classes=3)


# ----- one constructor for every layout ----------------------------------------------------------------------------
def test_auto_layout_is_classes_json_then_the_datasets_then_folder(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path, counts={"val": 1})
    ds = SegmentationDataset(tmp_path, "val", dataset="cityscapes")  # layout="auto"
    assert ds.layout is not None and ds.layout.layout == "cityscapes" and ds.name == "cityscapes"
    _check(ds, expected["val"], "cityscapes")
    with pytest.raises(FileNotFoundError, match=r"classes\.json"):  # no dataset named: the folder layout
        SegmentationDataset(tmp_path, "val")
    (tmp_path / "classes.json").write_text('["a", "b"]')
    with pytest.raises(FileNotFoundError, match=r"image folder .*images/val' does not exist"):
        SegmentationDataset(tmp_path, "val", dataset="cityscapes")  # classes.json: the folder layout wins


def test_folder_is_a_layout_like_the_others(tmp_path: Path) -> None:
    make_img_ann(tmp_path / "mm", 7, reduce=True)
    images = tmp_path / "folder" / "images" / "train"
    images.mkdir(parents=True)
    Image.new("RGB", (4, 2)).save(images / "a.png")
    (tmp_path / "folder" / "masks" / "train").mkdir(parents=True)
    Image.fromarray(np.ones((2, 4), np.uint8)).save(tmp_path / "folder" / "masks" / "train" / "a.png")
    (tmp_path / "folder" / "classes.json").write_text('["a", "b"]')
    for layout in ("auto", "folder"):
        ds = SegmentationDataset(tmp_path / "folder", "train", layout=layout)
        assert ds.layout is not None and ds.layout.layout == "folder" and ds.official_count is None
        assert ds.name == "folder" and ds.classes == ("a", "b") and ds.load(0)[1].tolist() == [[1] * 4] * 2
    assert "'folder', root=" in repr(ds)
    mmseg = SegmentationDataset(tmp_path / "mm", "val", layout="mmseg", dataset="potsdam", reduce_zero_label=False)
    assert mmseg.name == "potsdam" and not mmseg.reduce_zero_label  # given rules override the dataset's


def test_arguments_a_layout_has_no_use_for_are_refused(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, counts={"val": 1})
    with pytest.raises(ValueError, match=r"unknown dataset layout 'imagenet'; known: \['ade20k', .*'folder'"):
        SegmentationDataset(tmp_path, "val", layout="imagenet")
    with pytest.raises(ValueError, match=r"unknown zoo dataset 'cityscape'"):
        SegmentationDataset(tmp_path, "val", dataset="cityscape")
    with pytest.raises(ValueError, match=r"\['img_suffix'\] apply to the 'mmseg' layout only, not to the 'cityscapes'"):
        SegmentationDataset(tmp_path, "val", layout="cityscapes", img_suffix=".png")
    with pytest.raises(ValueError, match=r"\['seg_suffix'\] apply to the 'mmseg' layout only, not to the 'folder'"):
        SegmentationDataset(tmp_path, "val", layout="folder", seg_suffix=".png")
    with pytest.raises(ValueError, match=r"'cityscapes' layout holds RGB images, but the model takes in_chans=4"):
        SegmentationDataset(tmp_path, "val", layout="cityscapes", in_chans=4)
    with pytest.raises(ValueError, match=r"reduce_zero_label=True contradicts the 'cityscapes' layout"):
        SegmentationDataset(tmp_path, "val", layout="cityscapes", reduce_zero_label=True)
    assert len(SegmentationDataset(tmp_path, "val", layout="cityscapes", reduce_zero_label=False)) == 1
    with pytest.raises(ValueError, match=r"ignore_index=254: the 'cityscapes' layout marks ignored pixels with 255"):
        SegmentationDataset(tmp_path, "val", layout="cityscapes", ignore_index=254)
    pairs = [(tmp_path / "a.png", tmp_path / "b.png")]
    with pytest.raises(ValueError, match=r"layout=, dataset=, img_suffix= and seg_suffix= describe a root= folder"):
        SegmentationDataset(pairs=pairs, classes=2, layout="cityscapes")
    with pytest.raises(ValueError, match="split must be a non-empty name"):
        SegmentationDataset(tmp_path, "", layout="cityscapes")
