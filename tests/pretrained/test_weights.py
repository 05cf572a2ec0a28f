"""The weights path for a tag: Hub miss -> original checkpoint over HTTP (127.0.0.1) -> sha256 -> convert -> cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from parity import rel_err
from zoo_helpers import (
    GOLDEN_NAME,
    GOLDEN_PTH,
    TOL,
    Route,
    files_under,
    golden_arrays,
    register_golden,
)

import deeplabv3p
from deeplabv3p.pretrained import download, fetch, hub
from deeplabv3p.pretrained.fetch import WeightsUnavailableError, converted_path
from deeplabv3p.pretrained.state_dict import load_into, read_state_dict


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "dlv3p_cache"
    monkeypatch.setenv("DEEPLABV3P_CACHE", str(path))
    return path


def _serve_golden(http_server, monkeypatch, **route) -> deeplabv3p.PretrainedCfg:
    http_server.routes["/ckpt/golden.pth"] = Route(GOLDEN_PTH.read_bytes(), **route)
    return register_golden(monkeypatch, url=http_server.url + "/ckpt/golden.pth")


def _logits(model: deeplabv3p.DeepLabV3Plus) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(golden_arrays()["input"])


def test_download_verify_convert_cache_then_load_without_network(http_server, monkeypatch, cache):
    cfg = _serve_golden(http_server, monkeypatch)
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    # the Hub was asked first (no such repo there), then the original checkpoint was downloaded
    requests = http_server.file_requests()
    assert requests[0][1] == f"/deeplabv3p/{GOLDEN_NAME}/resolve/main/model.safetensors"
    assert requests[-1] == ("GET", "/ckpt/golden.pth")
    assert rel_err(_logits(model), golden_arrays()["logits"]) < TOL
    assert model.pretrained_cfg == cfg
    cached = converted_path(cfg)
    assert cached.is_file() and cached.parent.parent == cache
    assert files_under(cache) == [f"converted/{cached.name}"]  # no .pth, no temporaries left behind

    # networking off: the server is gone and any download attempt fails loudly
    http_server.stop()
    n_requests = len(http_server.file_requests())

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted although the converted copy is cached")

    monkeypatch.setattr(fetch, "download_url", no_network)
    monkeypatch.setattr(hub, "hf_hub_download", no_network)
    again = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert len(http_server.file_requests()) == n_requests
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_damaged_cached_copy_is_fetched_again(http_server, monkeypatch, cache):
    cfg = _serve_golden(http_server, monkeypatch)
    cached = converted_path(cfg)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x00" * 100)
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert ("GET", "/ckpt/golden.pth") in http_server.file_requests()
    assert rel_err(_logits(model), golden_arrays()["logits"]) < TOL
    assert read_state_dict(cached).keys() == model.state_dict().keys()


def test_sha256_mismatch_is_refused_and_leaves_nothing(http_server, monkeypatch, cache):
    cfg = _serve_golden(http_server, monkeypatch)
    register_golden(monkeypatch, url=cfg.url, sha256_prefix="00000000")
    with pytest.raises(WeightsUnavailableError) as info:
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    message = str(info.value)
    assert "expected it to start with '00000000'" in message
    assert "checkpoint_path=" in message and cfg.url in message
    assert files_under(cache) == []


def test_truncated_transfer_is_refused_and_leaves_nothing(http_server, monkeypatch, cache):
    _serve_golden(http_server, monkeypatch, mode="truncate")
    with pytest.raises(WeightsUnavailableError, match=r"truncated|broke off"):
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert files_under(cache) == []


def test_server_error_is_reported(http_server, monkeypatch, cache):
    _serve_golden(http_server, monkeypatch, status=500)
    with pytest.raises(WeightsUnavailableError, match="HTTP 500"):
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert files_under(cache) == []


def test_error_says_what_was_tried_why_and_how_to_fix(http_server, monkeypatch, cache):
    cfg = register_golden(monkeypatch, url=http_server.url + "/ckpt/missing.pth")
    with pytest.raises(WeightsUnavailableError) as info:
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    lines = str(info.value).splitlines()
    assert lines[0] == f"could not get the weights of {GOLDEN_NAME!r}."
    assert lines[2].startswith(f"  1. Hugging Face Hub repo {cfg.hf_hub_id}: no repository {cfg.hf_hub_id}")
    assert lines[3].startswith(f"  2. original mmseg checkpoint {cfg.url}: ") and "HTTP 404" in lines[3]
    assert f'create_model("{GOLDEN_NAME}", pretrained=True, checkpoint_path="missing.pth")' in lines[-1]


def test_offline_mode_never_downloads(http_server, monkeypatch, cache):
    _serve_golden(http_server, monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError) as info:
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert http_server.file_requests() == []
    message = str(info.value)
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in message and "unset HF_HUB_OFFLINE" in message


def test_local_checkpoint_with_tag_metadata_touches_no_network(http_server, monkeypatch, cache):
    cfg = _serve_golden(http_server, monkeypatch)
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH)
    assert http_server.file_requests() == []
    assert model.pretrained_cfg == cfg
    assert rel_err(_logits(model), golden_arrays()["logits"]) < TOL


def test_fine_tuning_load_reinitialises_only_the_classifiers(monkeypatch):
    register_golden(monkeypatch)
    loaded = read_state_dict(GOLDEN_PTH)
    with pytest.warns(UserWarning, match="left freshly initialised"):
        model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH, num_classes=3)
    state = model.state_dict()
    heads = {"classifier.conv.weight", "classifier.conv.bias", "aux_head.classifier.conv.weight"}
    heads.add("aux_head.classifier.conv.bias")
    assert state["classifier.conv.weight"].shape[0] == 3 and state["aux_head.classifier.conv.weight"].shape[0] == 3
    for key, value in loaded.items():
        if key not in heads:
            assert torch.equal(state[key], value), key
    cfg = model.pretrained_cfg
    assert cfg.num_classes == 3 and cfg.classes == () and cfg.metrics == {} and cfg.url is None and cfg.tag == ""
    assert cfg.test.scale == (2048, 1024) and cfg.crop_size == (512, 1024)
    assert cfg.mean == (123.675, 116.28, 103.53) and GOLDEN_NAME in cfg.notes[0]


def test_in_chans_adapts_the_first_conv_and_loads_the_rest(monkeypatch):
    register_golden(monkeypatch)
    loaded = read_state_dict(GOLDEN_PTH)
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH, in_chans=4)
    state = model.state_dict()
    first = "encoder.body.conv1.0.weight"
    assert state[first].shape[1] == 4 and loaded[first].shape[1] == 3
    assert not torch.equal(state[first][:, :3], torch.zeros_like(state[first][:, :3]))
    assert all(torch.equal(state[k], v) for k, v in loaded.items() if k != first)


def test_unexpected_and_missing_keys_are_reported(monkeypatch):
    register_golden(monkeypatch)
    model = deeplabv3p.create_model(GOLDEN_NAME)
    state = read_state_dict(GOLDEN_PTH)
    state["decoder.extra.weight"] = torch.zeros(1)
    del state["decoder.low_level.conv.weight"]
    with pytest.raises(ValueError) as info:
        load_into(model, state)
    assert "decoder.extra.weight" in str(info.value) and "decoder.low_level.conv.weight" in str(info.value)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _Payload()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_download_url_writes_only_verified_files(http_server, tmp_path):
    body = b"x" * 5000
    http_server.routes["/f.bin"] = Route(body)
    dest = tmp_path / "d" / "f.bin"
    good = download.sha256_file(GOLDEN_PTH)  # a wrong prefix for `body`
    with pytest.raises(download.ChecksumError):
        download.download_url(http_server.url + "/f.bin", dest, sha256_prefix=good[:8], progress=False)
    assert files_under(tmp_path) == []
    import hashlib

    prefix = hashlib.sha256(body).hexdigest()[:8]
    assert download.download_url(http_server.url + "/f.bin", dest, sha256_prefix=prefix, progress=False) == dest
    assert dest.read_bytes() == body and files_under(tmp_path) == ["d/f.bin"]


def test_cache_dir_follows_env_and_hf_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPLABV3P_CACHE", str(tmp_path / "mine"))
    assert fetch.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("DEEPLABV3P_CACHE")
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    assert fetch.cache_dir() == tmp_path / "hf" / "deeplabv3p"
