"""The saved-model format: save_pretrained / create_model(folder), hf-hub ids through the HF cache and a local
Hub endpoint, push_to_hub, the model card, and `deeplabv3p convert`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from parity import rel_err
from zoo_helpers import (
    GOLDEN_ARCH,
    GOLDEN_CONFIG,
    GOLDEN_NAME,
    GOLDEN_PTH,
    TOL,
    files_under,
    fill_hf_cache,
    golden_arrays,
    read_json,
    register_golden,
)

import deeplabv3p
from deeplabv3p import cli
from deeplabv3p.pretrained.config import CONFIG_SCHEMA_VERSION
from deeplabv3p.pretrained.hub import HubFileError
from deeplabv3p.pretrained.model_card import model_card
from deeplabv3p.pretrained.network import PROBE_TIMEOUT_ENV


@pytest.fixture
def golden(monkeypatch) -> deeplabv3p.DeepLabV3Plus:
    """The golden network with its weights and the registered tag's metadata, in eval mode."""
    register_golden(monkeypatch)
    return deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH).eval()


def _assert_same(a: deeplabv3p.DeepLabV3Plus, b: deeplabv3p.DeepLabV3Plus) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    assert a.config == b.config


def test_save_load_round_trip_is_bit_exact(golden, tmp_path):
    with torch.no_grad():  # non-trivial BN statistics and counters must survive too
        golden.encoder.body.bn1.running_var.mul_(1.5)
        golden.encoder.body.bn1.num_batches_tracked.fill_(12345)
    out = golden.save_pretrained(tmp_path / "out")
    assert files_under(out) == ["README.md", "config.json", "model.safetensors"]
    loaded = deeplabv3p.create_model(str(tmp_path / "out") + "/")
    _assert_same(golden, loaded)
    assert loaded.pretrained_cfg == golden.pretrained_cfg
    assert loaded.pretrained_cfg.classes == golden.pretrained_cfg.classes
    x = golden_arrays()["input"]
    with torch.inference_mode():
        assert torch.equal(golden(x), loaded.eval()(x))


def test_config_json_layout(golden, tmp_path):
    golden.save_pretrained(tmp_path)
    data = read_json(tmp_path / "config.json")
    assert data["schema_version"] == CONFIG_SCHEMA_VERSION
    assert data["architecture"] == GOLDEN_ARCH
    assert data["model_config"] == GOLDEN_CONFIG.to_dict()
    assert data["pretrained_cfg"]["tag"] == "golden_97x131_1k"
    assert data["pretrained_cfg"]["classes"] == list(golden.pretrained_cfg.classes)
    assert set(data) == {"schema_version", "architecture", "model_config", "pretrained_cfg", "library_version"}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"schema_version": CONFIG_SCHEMA_VERSION + 1}, ValueError, "upgrade"),
        ({"schema_version": 0}, ValueError, r"schema_version must be an int >= 1, got 0"),
        ({"schema_version": "1"}, TypeError, r"schema_version must be an int >= 1, got '1' \(str\)"),
        ({"extra": 1}, ValueError, "unknown top-level key"),
        ({"architecture": "deeplabv3plus_r18_d8"}, ValueError, "disagrees"),
    ],
)
def test_bad_config_json_is_refused_clearly(golden, tmp_path, change, error, message):
    golden.save_pretrained(tmp_path)
    data = read_json(tmp_path / "config.json")
    data.update(change)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(error, match=message):
        deeplabv3p.create_model(str(tmp_path))


def test_folder_fine_tuning_and_untrained_build(golden, tmp_path):
    golden.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="left freshly initialised"):
        tuned = deeplabv3p.create_model(str(tmp_path), num_classes=2)
    assert tuned.num_classes == 2
    assert torch.equal(
        tuned.state_dict()["decoder.low_level.conv.weight"], golden.state_dict()["decoder.low_level.conv.weight"]
    )
    untrained = deeplabv3p.create_model(str(tmp_path), pretrained=False)
    assert untrained.config == golden.config
    assert not torch.equal(
        untrained.state_dict()["classifier.conv.weight"], golden.state_dict()["classifier.conv.weight"]
    )


def test_reset_classifier_then_save_describes_the_new_head(golden, tmp_path):
    golden.reset_classifier(4)
    loaded = deeplabv3p.create_model(str(golden.save_pretrained(tmp_path)))
    cfg = loaded.pretrained_cfg
    assert loaded.num_classes == 4 and cfg.num_classes == 4 and cfg.classes == () and cfg.metrics == {}
    assert GOLDEN_NAME in cfg.notes[0]
    _assert_same(golden, loaded)


def test_registry_names_win_over_a_folder_of_the_same_name(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    golden.save_pretrained(GOLDEN_ARCH)
    assert deeplabv3p.create_model(GOLDEN_ARCH).pretrained_cfg.tag == ""  # the architecture, not the folder
    assert deeplabv3p.create_model(f"./{GOLDEN_ARCH}").pretrained_cfg.tag == "golden_97x131_1k"


def test_missing_folder_suggests_hub_syntax():
    with pytest.raises(FileNotFoundError, match="hf-hub:someone/model"):
        deeplabv3p.create_model("someone/model")


def test_hf_hub_id_loads_from_filled_cache_offline(golden, tmp_path, monkeypatch):
    saved = golden.save_pretrained(tmp_path / "saved")
    files = {name: saved / name for name in ("config.json", "model.safetensors")}
    commit = fill_hf_cache(tmp_path / "hub", "someone/their-finetuned-model", files)
    fill_hf_cache(tmp_path / "hub", "someone/their-finetuned-model", files, revision="v1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for spec in ("", "@v1", f"@{commit}"):
        loaded = deeplabv3p.create_model("hf-hub:someone/their-finetuned-model" + spec)
        _assert_same(golden, loaded)
    with pytest.raises(HubFileError, match=r"no revision|offline mode is on"):
        deeplabv3p.create_model("hf-hub:someone/their-finetuned-model@v2")


def test_hf_env_variables_are_honoured_in_a_fresh_process(golden, tmp_path):
    """HF_HOME and HF_HUB_OFFLINE set in the environment (read by huggingface_hub at import) take effect."""
    saved = golden.save_pretrained(tmp_path / "saved")
    files = {name: saved / name for name in ("config.json", "model.safetensors")}
    fill_hf_cache(tmp_path / "home" / "hub", "someone/model", files)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DEEPLABV3P_"))}
    env.update(HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(deeplabv3p.__file__).parents[1]))
    code = (
        "import deeplabv3p\n"
        "m = deeplabv3p.create_model('hf-hub:someone/model')\n"
        "print(m.pretrained_cfg.name, float(m.state_dict()['classifier.conv.weight'].double().sum()))\n"
        "try:\n"
        "    deeplabv3p.create_model('hf-hub:someone/other')\n"
        "except OSError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    expected = float(golden.state_dict()["classifier.conv.weight"].double().sum())
    assert first.split() == [GOLDEN_NAME, repr(expected)]
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in second and str(tmp_path / "home" / "hub") in second


def test_hf_hub_offline_miss_says_so(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubFileError) as info:
        deeplabv3p.create_model("hf-hub:someone/not-cached")
    message = str(info.value)
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message and "someone/not-cached" in message
    assert constants.HF_HUB_CACHE in message


def test_tag_loads_from_hub_cache_offline(monkeypatch, tmp_path, golden):
    saved = golden.save_pretrained(tmp_path / "saved")
    cfg = register_golden(monkeypatch)
    fill_hf_cache(tmp_path / "hub", cfg.hf_hub_id, {"model.safetensors": saved / "model.safetensors"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    _assert_same(golden, model)
    with torch.inference_mode():
        assert rel_err(model.eval()(golden_arrays()["input"]), golden_arrays()["logits"]) < TOL


def test_hf_hub_download_through_an_endpoint_then_offline(golden, tmp_path, monkeypatch, http_server):
    saved = golden.save_pretrained(tmp_path / "saved")
    http_server.hub_repos["someone/remote"] = {
        name: (saved / name).read_bytes() for name in ("config.json", "model.safetensors")
    }
    model = deeplabv3p.create_model("hf-hub:someone/remote")
    _assert_same(golden, model)
    assert ("GET", "/someone/remote/resolve/main/model.safetensors") in http_server.file_requests()
    with pytest.raises(HubFileError, match="has no revision 'nope'"):
        deeplabv3p.create_model("hf-hub:someone/remote@nope")
    with pytest.raises(HubFileError, match="no repository someone/absent"):
        deeplabv3p.create_model("hf-hub:someone/absent")
    http_server.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _assert_same(golden, deeplabv3p.create_model("hf-hub:someone/remote"))


@pytest.mark.parametrize("bad", ["hf-hub:", "hf-hub:noslash", "hf-hub:a/b/c", "hf-hub:/b"])
def test_malformed_hub_ids(bad):
    with pytest.raises(ValueError, match="hf-hub:ORG/NAME"):
        deeplabv3p.create_model(bad)


def test_push_to_hub_uploads_the_saved_format(golden, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoUrl

    uploaded = tmp_path / "uploaded"
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = (repo_id, kwargs)
        import shutil

        shutil.copytree(folder_path, uploaded)
        return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv(PROBE_TIMEOUT_ENV, "0")  # the stand-in Hub is there: no connection check before pushing
    url = golden.push_to_hub("someone/repo", private=True)
    assert url == "https://huggingface.co/someone/repo/commit/abc"
    assert calls["create_repo"] == ("someone/repo", {"private": True, "exist_ok": True})
    assert files_under(uploaded) == ["README.md", "config.json", "model.safetensors"]
    assert read_json(uploaded / "config.json")["pretrained_cfg"]["hf_hub_id"] == "someone/repo"
    assert 'create_model("hf-hub:someone/repo")' in (uploaded / "README.md").read_text()
    _assert_same(golden, deeplabv3p.create_model(str(uploaded)))


def test_model_card_of_a_zoo_tag():
    cfg = deeplabv3p.get_pretrained_cfg("deeplabv3plus_r101_d8.cityscapes_769x769_80k")
    config = deeplabv3p.pretrained.get_model_config(cfg.architecture).replace(num_classes=19, align_corners=True)
    card = model_card(config, cfg)
    assert card.startswith("---\nlibrary_name: deeplabv3p\n")
    assert "license: apache-2.0" in card
    assert "| mIoU, single scale | 80.65 |" in card and "| mIoU, multi-scale + flip | 81.47 |" in card
    assert "Cityscapes" in card and "sliding window 769x769, stride 513x513" in card
    assert cfg.url in card and "dfcc0b68" in card and "seed 1111" in card  # source and the row's note
    assert 'create_model("hf-hub:deeplabv3p/deeplabv3plus_r101_d8.cityscapes_769x769_80k")' in card
    assert "18. bicycle" in card


def test_cli_convert_makes_a_loadable_folder(monkeypatch, tmp_path, capsys):
    register_golden(monkeypatch)
    assert cli.main(["convert", str(GOLDEN_PTH), "--model", GOLDEN_NAME, "--out", str(tmp_path / "out")]) == 0
    assert "warning" not in capsys.readouterr().err
    model = deeplabv3p.create_model(str(tmp_path / "out"))
    assert model.pretrained_cfg.name == GOLDEN_NAME
    with torch.inference_mode():
        assert rel_err(model.eval()(golden_arrays()["input"]), golden_arrays()["logits"]) < TOL
    assert files_under(tmp_path / "out") == ["README.md", "config.json", "model.safetensors"]


def test_cli_convert_warns_on_another_file(monkeypatch, tmp_path, capsys):
    register_golden(monkeypatch, sha256_prefix="deadbeef")
    assert cli.main(["convert", str(GOLDEN_PTH), "--model", GOLDEN_NAME, "--out", str(tmp_path)]) == 0
    assert "does not start with deadbeef" in capsys.readouterr().err
    assert (tmp_path / "model.safetensors").is_file()


def test_cli_convert_refuses_a_class_count_mismatch(monkeypatch, tmp_path, capsys):
    register_golden(monkeypatch, num_classes=5, classes=(), palette=())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one message: no "left freshly initialised" warning before the error
        code = cli.main(["convert", str(GOLDEN_PTH), "--model", GOLDEN_NAME, "--out", str(tmp_path / "a")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"deeplabv3p convert: error: {GOLDEN_PTH} predicts 7 classes and {GOLDEN_NAME} 5: pass the tag these "
        f"weights belong to, or the bare architecture {GOLDEN_ARCH!r} to take the class count from the checkpoint\n"
    )
    assert not (tmp_path / "a").exists()


def test_cli_convert_bare_architecture_reads_the_class_count(monkeypatch, tmp_path):
    monkeypatch.setitem(deeplabv3p.pretrained.zoo.ARCHITECTURES, GOLDEN_ARCH, GOLDEN_CONFIG.replace(num_classes=5))
    assert cli.main(["convert", str(GOLDEN_PTH), "--model", GOLDEN_ARCH, "--out", str(tmp_path)]) == 0
    model = deeplabv3p.create_model(str(tmp_path))
    assert model.num_classes == 7 and model.pretrained_cfg.tag == ""
    with torch.inference_mode():
        assert rel_err(model.eval()(golden_arrays()["input"]), golden_arrays()["logits"]) < TOL
