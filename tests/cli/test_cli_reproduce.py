"""One-command reproduction and recipes on fabricated trees: ``evaluate --model TAG --data ROOT`` (layout from the
tag, published vs measured, split-size warning, label audit, --json), ``train --recipe TAG`` and ``prepare``."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_trees import make_cityscapes, raw_potsdam
from PIL import Image
from train_helpers import one_thread  # noqa: F401  (autouse fixture)
from zoo_helpers import GOLDEN_ARCH, GOLDEN_CONFIG, GOLDEN_PTH, Route, golden_cfg, sha256

from deeplabv3p.cli import COMMANDS, main
from deeplabv3p.inference.model import create_model
from deeplabv3p.pretrained import zoo
from deeplabv3p.pretrained.fetch import converted_path
from deeplabv3p.train.metrics import ConfusionMatrix
from deeplabv3p.train.prepare import PREPARE_NAMES

TAG = "cityscapes_64x32_1k"
NAME = f"{GOLDEN_ARCH}.{TAG}"
QUIET = ["--no-progress"]


@pytest.fixture
def cityscapes_tag(monkeypatch: pytest.MonkeyPatch, http_server, tmp_path: Path):
    """A 19-class narrow golden network registered as a Cityscapes row whose weights are a random mmseg checkpoint
    (the golden's container with new 19-class classifiers) served from a local URL: download, sha256, convert."""
    container = torch.load(GOLDEN_PTH, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    state = dict(container["state_dict"])
    for head, width in (("decode_head", 64), ("auxiliary_head", 32)):
        state[f"{head}.conv_seg.weight"] = torch.randn(19, width, 1, 1, generator=generator)
        state[f"{head}.conv_seg.bias"] = torch.randn(19, generator=generator)
    buffer = io.BytesIO()
    torch.save({"meta": {}, "state_dict": state}, buffer)
    checkpoint = tmp_path / "random_mmseg_cityscapes.pth"
    checkpoint.write_bytes(buffer.getvalue())
    http_server.routes["/random.pth"] = Route(buffer.getvalue())
    meta = zoo.DATASETS["cityscapes"]
    cfg = golden_cfg(
        tag=TAG, dataset="cityscapes", num_classes=19, classes=meta["classes"], palette=meta["palette"],
        hf_hub_id=None, url=f"{http_server.url}/random.pth", sha256_prefix=sha256(checkpoint)[:8],
        test_scale=(64, 32), crop_size=(32, 64), metrics={"mIoU": 5.0, "mIoU_ms_flip": 6.0},
    )  # fmt: skip
    monkeypatch.setitem(zoo.ARCHITECTURES, GOLDEN_ARCH, GOLDEN_CONFIG.replace(num_classes=19))
    monkeypatch.setitem(zoo.PRETRAINED_CFGS, NAME, cfg)
    return cfg


def test_evaluate_a_tag_on_the_cityscapes_tree(cityscapes_tag, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    expected = make_cityscapes(tmp_path / "cityscapes", counts={"val": 2}, seed=3)
    out_json = tmp_path / "metrics.json"
    args = ["evaluate", "--model", NAME, "--data", str(tmp_path / "cityscapes"), "--json", str(out_json), *QUIET]
    assert main(args) == 0
    captured = capsys.readouterr()
    print(captured.out)  # the table, for the record
    assert "val' has 2 images but the official one has 500" in captured.err
    assert "road" in captured.out and "bicycle" in captured.out

    # the same numbers computed here from the fabricated labelIds mapped to trainIds
    model = create_model(NAME, pretrained=True)
    matrix = ConfusionMatrix(19)
    for image_path, mask in expected["val"]:
        labels = model.predict(np.asarray(Image.open(image_path).convert("RGB"))).labels
        matrix.update(torch.as_tensor(np.asarray(labels)), torch.from_numpy(mask))
    reference = matrix.compute()
    record = json.loads(out_json.read_text())
    assert record["mIoU"] == pytest.approx(reference["mIoU"])
    measured = f"{reference['mIoU']:.2f}"
    assert f"published mIoU 5.00, measured {measured} ({reference['mIoU'] - 5.0:+.2f})" in captured.out
    assert record["published"] == {"mIoU": 5.0, "mIoU_ms_flip": 6.0}
    assert record["comparison"]["diff"] == pytest.approx(round(reference["mIoU"] - 5.0, 2))
    weights = converted_path(cityscapes_tag)
    assert record["weights"]["file"] == str(weights) and record["weights"]["sha256"] == sha256(weights)
    assert record["weights"]["source_sha256_prefix"] == cityscapes_tag.sha256_prefix
    assert record["settings"]["test"]["scale"] == [64, 32] and record["settings"]["tta"] is False
    assert record["data"]["layout"] == "cityscapes" and record["data"]["images"] == 2
    assert record["data"]["official_images"] == 500


def test_evaluate_tta_compares_with_the_ms_flip_number(cityscapes_tag, tmp_path: Path, capsys) -> None:
    make_cityscapes(tmp_path / "cs", counts={"val": 1}, seed=4)
    assert main(["evaluate", "--model", NAME, "--data", str(tmp_path / "cs"), "--tta", *QUIET]) == 0
    assert "published mIoU_ms_flip 6.00, measured" in capsys.readouterr().out


def test_evaluate_reads_a_zoo_layout_with_the_zoos_label_rules(cityscapes_tag, tmp_path: Path, capsys, monkeypatch):
    """The weights' reduce_zero_label is for trees without rules of their own (folder, mmseg); a flag that
    contradicts a zoo layout's rule is refused."""
    monkeypatch.setitem(zoo.PRETRAINED_CFGS, NAME, dataclasses.replace(cityscapes_tag, reduce_zero_label=True))
    make_cityscapes(tmp_path / "cs", counts={"val": 1}, seed=4)
    assert main(["evaluate", "--model", NAME, "--data", str(tmp_path / "cs"), "--no-audit", *QUIET]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", NAME, "--data", str(tmp_path / "cs"), "--reduce-zero-label", *QUIET]) == 2
    assert "reduce_zero_label=True contradicts the 'cityscapes' layout" in capsys.readouterr().err


def test_evaluate_audits_labels_before_the_run(cityscapes_tag, tmp_path: Path, capsys, monkeypatch) -> None:
    make_cityscapes(tmp_path / "cs", counts={"val": 2}, train_ids=True, seed=5)
    wrong = sorted((tmp_path / "cs" / "gtFine" / "val").rglob("*_labelTrainIds.png"))[1]
    Image.open(str(wrong).replace("TrainIds", "Ids")).save(wrong)  # labelIds given as trainIds
    import deeplabv3p.train.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("the run started despite bad labels"))
    assert main(["evaluate", "--model", NAME, "--data", str(tmp_path / "cs"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 label files" in err and str(wrong) in err and "labelIds saved as _labelTrainIds" in err


def test_evaluate_on_a_wrong_root_says_what_it_expected(cityscapes_tag, tmp_path: Path, capsys) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    assert main(["evaluate", "--model", NAME, "--data", str(tmp_path / "data"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "is not a cityscapes dataset folder" in err and "leftImg8bit" in err and "images/" in err


def test_train_recipe_uses_the_rows_schedule(cityscapes_tag, tmp_path: Path, capsys) -> None:
    make_cityscapes(tmp_path / "cs", counts={"train": 2, "val": 1}, seed=6)
    out = tmp_path / "run"
    args = ["train", "--recipe", NAME, "--data", str(tmp_path / "cs"), "--out", str(out), "--iters", "1"]
    args += ["--batch-size", "2", "--crop-size", "24", "24", "--num-workers", "0", *QUIET]
    assert main(args) == 0
    assert '"recipe": "deeplabv3plus_r50_d8_golden.cityscapes_64x32_1k"' in capsys.readouterr().out
    record = json.loads((out / "recipe.json").read_text())
    assert record["published_batch"] == {"gpus": 4, "per_gpu": 2, "total": 8}
    assert record["overrides"] == {"iters": 1, "batch_size": 2, "crop_size": [24, 24], "num_workers": 0}
    config = json.loads((out / "train_config.json").read_text())["train"]
    augment, optim = config["augment"], config["optim"]
    assert (config["iters"], config["batch_size"], augment["crop_size"]) == (1, 2, [24, 24])
    assert (augment["scale"], optim["lr"], optim["weight_decay"], optim["min_lr"]) == ([2048, 1024], 0.01, 5e-4, 1e-4)
    assert config["test"]["scale"] == [64, 32] and config["loss"]["aux_weight"] == 0.4
    saved = json.loads((out / "best" / "config.json").read_text())["pretrained_cfg"]
    assert saved["dataset"] == "cityscapes" and saved["num_classes"] == 19 and saved["test"]["scale"] == [64, 32]


def test_prepare_command(tmp_path: Path, capsys) -> None:
    assert set(COMMANDS) >= {"prepare", "evaluate", "train"}
    raw_potsdam(tmp_path / "raw")
    assert main(["prepare", "potsdam", str(tmp_path / "raw"), str(tmp_path / "out"), *QUIET]) == 0
    assert "img_dir/train: 6 written" in capsys.readouterr().out
    assert main(["prepare", "potsdam", str(tmp_path / "nowhere"), str(tmp_path / "out"), *QUIET]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_prepare_names_match_the_converters(capsys) -> None:
    from deeplabv3p.train.prepare import CONVERTERS

    assert PREPARE_NAMES == tuple(CONVERTERS) == ("potsdam", "vaihingen", "isaid", "loveda", "cityscapes")
    with pytest.raises(SystemExit):
        main(["prepare", "ade20k", "raw"])
    err = capsys.readouterr().err
    assert "invalid choice: 'ade20k'" in err and all(name in err for name in PREPARE_NAMES)
