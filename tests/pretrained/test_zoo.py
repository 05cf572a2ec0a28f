"""The 43 pretrained tags and the datasets against the reference zoo.json, dataset aliases, the README zoo table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub.utils import validate_repo_id

import deeplabv3p
from deeplabv3p import cli
from deeplabv3p.pretrained.config import PretrainedCfg
from deeplabv3p.pretrained.model_card import ZOO_TABLE_BEGIN, ZOO_TABLE_END, zoo_table
from deeplabv3p.pretrained.zoo import DATASETS, HUB_ORG

REFERENCE = json.loads((Path(__file__).parents[1] / "data" / "zoo_reference.json").read_text())
ROWS = REFERENCE["models"]
README = Path(__file__).parents[2] / "README.md"

_ARCH_OF_LABEL = {
    "R-18-D8": "deeplabv3plus_r18_d8",
    "R-50-D8": "deeplabv3plus_r50_d8",
    "R-101-D8": "deeplabv3plus_r101_d8",
    "R-101-D16-MG124": "deeplabv3plus_r101_d16_mg124",
    "R-18b-D8": "deeplabv3plus_r18b_d8",
    "R-50b-D8": "deeplabv3plus_r50b_d8",
    "R-101b-D8": "deeplabv3plus_r101b_d8",
}


def _name(row: dict) -> str:
    """The documented naming rule: ARCH.DATASET_CROP_ITERS, ``_amp`` for the FP16 row."""
    h, w = row["crop_size"]
    tag = f"{row['dataset']}_{h}x{w}_{row['iters'] // 1000}k" + ("_amp" if row["fp16"] else "")
    return f"{_ARCH_OF_LABEL[row['backbone_label']]}.{tag}"


def _tuple(value):
    return None if value is None else tuple(value)


def test_there_are_43_tags_one_per_row():
    assert len(ROWS) == 43
    assert sorted(deeplabv3p.list_pretrained()) == sorted(_name(r) for r in ROWS)


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_dataset_facts_match_reference(name):
    expected = REFERENCE["datasets"][name]
    assert set(DATASETS) == set(REFERENCE["datasets"])
    assert DATASETS[name] == {
        "display_name": expected["display_name"],
        "reduce_zero_label": expected["reduce_zero_label"],
        "classes": tuple(expected["classes"]),
        "palette": tuple(tuple(c) for c in expected["palette"]),
    }
    assert len(DATASETS[name]["classes"]) == expected["num_classes"]


@pytest.mark.parametrize("row", ROWS, ids=_name)
def test_tag_metadata_matches_reference_row(row):
    cfg = deeplabv3p.get_pretrained_cfg(_name(row))
    dataset = REFERENCE["datasets"][row["dataset"]]
    expected_metrics = {
        "mIoU": row["miou"],
        "mIoU_ms_flip": row["miou_ms_flip"],
        "train_mem_gb": row["mem_gb"],
        "fps": row["fps"],
        "fps_device": row["fps_device"] if row["fps"] is not None else None,
    }
    assert cfg.dataset == row["dataset"]
    assert cfg.num_classes == row["num_classes"] == dataset["num_classes"]
    assert cfg.classes == tuple(dataset["classes"])
    assert cfg.palette == tuple(tuple(c) for c in dataset["palette"])
    assert cfg.mean == tuple(row["mean"]) and cfg.std == tuple(row["std"])
    assert cfg.reduce_zero_label == row["reduce_zero_label"] == dataset["reduce_zero_label"]
    assert cfg.ignore_index == row["ignore_index"]
    assert cfg.crop_size == tuple(row["crop_size"])
    assert cfg.test.scale == tuple(row["test_resize_scale"])
    assert cfg.test.keep_ratio == row["keep_ratio"]
    assert cfg.test.mode == row["test_mode"]
    assert cfg.test.window == _tuple(row["test_crop_size"]) and cfg.test.stride == _tuple(row["test_stride"])
    assert cfg.test.tta_ratios == tuple(row["tta_ratios"]) and cfg.test.tta_flip == row["tta_flip"]
    assert cfg.align_corners == row["decode_head"]["align_corners"] == row["auxiliary_head"]["align_corners"]
    assert cfg.metrics == {k: v for k, v in expected_metrics.items() if v is not None}
    assert cfg.url == row["checkpoint_url"] and cfg.url.endswith(f"-{row['sha256_prefix']}.pth")
    assert cfg.sha256_prefix == row["sha256_prefix"]
    assert cfg.source_config == row["config"]
    assert cfg.iters == row["iters"]
    assert cfg.license == "apache-2.0"
    assert cfg.notes == tuple(row["notes"])
    assert cfg.hf_hub_id == f"{HUB_ORG}/{_name(row)}"


@pytest.mark.parametrize("row", ROWS, ids=_name)
def test_tag_architecture_matches_row(row):
    cfg = deeplabv3p.get_pretrained_cfg(_name(row))
    arch = deeplabv3p.pretrained.get_model_config(cfg.architecture)
    assert arch.output_stride == row["output_stride"]
    assert arch.multi_grid == _tuple(row["multi_grid"])
    assert arch.resolved_aspp_rates() == tuple(row["decode_head"]["dilations"])
    assert arch.decoder_channels == row["decode_head"]["channels"]
    assert arch.low_level_channels == row["decode_head"]["c1_channels"]
    assert arch.aux_channels == row["auxiliary_head"]["channels"]
    assert arch.encoder == f"resnet{row['depth']}"
    assert (arch.encoder_kwargs.get("stem_type") == "deep") == (row["backbone_type"] == "ResNetV1c")


def test_metadata_survives_json_round_trip():
    for name in deeplabv3p.list_pretrained():
        cfg = deeplabv3p.get_pretrained_cfg(name)
        assert PretrainedCfg.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_hub_repo_ids_are_valid():
    for name in deeplabv3p.list_pretrained():
        repo_id = deeplabv3p.get_pretrained_cfg(name).hf_hub_id
        validate_repo_id(repo_id)
        assert len(repo_id.split("/")[1]) <= 96


def _best_rows() -> dict[tuple[str, str], str]:
    best: dict[tuple[str, str], dict] = {}
    for row in ROWS:
        key = (_ARCH_OF_LABEL[row["backbone_label"]], row["dataset"])
        if key not in best or row["miou"] > best[key]["miou"]:
            best[key] = row
    return {key: _name(row) for key, row in best.items()}


@pytest.mark.parametrize(("arch_dataset", "name"), sorted(_best_rows().items()))
def test_dataset_alias_picks_best_single_scale_row(arch_dataset, name):
    arch, dataset = arch_dataset
    assert deeplabv3p.get_pretrained_cfg(arch, dataset).name == name
    assert deeplabv3p.get_pretrained_cfg(f"{arch}.{dataset}").name == name


def test_alias_examples():
    assert deeplabv3p.get_pretrained_cfg("deeplabv3plus_r101_d8", "cityscapes").tag == "cityscapes_512x1024_80k"
    assert deeplabv3p.get_pretrained_cfg("deeplabv3plus_r50_d8", "ade20k").tag == "ade20k_512x512_160k"


def test_list_pretrained_filter():
    assert deeplabv3p.list_pretrained("*ade20k*") == [
        "deeplabv3plus_r50_d8.ade20k_512x512_80k",
        "deeplabv3plus_r50_d8.ade20k_512x512_160k",
        "deeplabv3plus_r101_d8.ade20k_512x512_80k",
        "deeplabv3plus_r101_d8.ade20k_512x512_160k",
    ]


def test_readme_zoo_table_is_the_generated_one():
    text = README.read_text()
    match = re.search(re.escape(ZOO_TABLE_BEGIN) + r"\n(.*?)\n" + re.escape(ZOO_TABLE_END), text, re.S)
    assert match, "README.md lacks the generated zoo table markers"
    assert match.group(1) == zoo_table(), "README zoo table is stale: regenerate with `deeplabv3p list --markdown`"


def test_zoo_table_has_one_line_per_tag_with_its_numbers():
    lines = zoo_table().splitlines()[2:]
    assert len(lines) == 43
    line = next(x for x in lines if "`deeplabv3plus_r101_d8.cityscapes_512x1024_80k_amp`" in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:6] == ["`deeplabv3plus_r101_d8`", "Cityscapes", "512x1024", "80k", "80.46", "-"]


def test_cli_list_markdown(capsys):
    assert cli.main(["list", "--markdown", "*loveda*"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == zoo_table(deeplabv3p.list_pretrained("*loveda*"))
    assert out.count("\n| `") == 3
    assert cli.main(["list", "--pretrained", "*nothing*"]) == 1
