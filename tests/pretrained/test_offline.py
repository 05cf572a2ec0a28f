"""No network and no HF_HUB_OFFLINE: the first tag load fails (or uses the caches) within seconds, because a quick
connection check comes before huggingface_hub's retries; the check itself (DNS, refused, timeout, proxy, switch)."""

from __future__ import annotations

import socket
import time

import pytest
import torch
from huggingface_hub import constants
from zoo_helpers import GOLDEN_NAME, GOLDEN_PTH, fill_hf_cache, register_golden

import deeplabv3p
from deeplabv3p.pretrained import network
from deeplabv3p.pretrained.fetch import WeightsUnavailableError, converted_path
from deeplabv3p.pretrained.hub import hub_file

FAST = 3.0  # seconds: a machine without network must hear it this fast (huggingface_hub's retries took ~24 s)


@pytest.fixture(autouse=True)
def _fresh_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "_failures", {})
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A machine without network: every name lookup beyond loopback fails as the resolver does then."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object):
        if host not in ("127.0.0.1", "localhost", "::1"):
            asked.append(str(host))
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_first_tag_load_without_network_fails_fast_and_says_how_to_fix(monkeypatch, no_dns):
    register_golden(monkeypatch, url="https://download.openmmlab.com/x/golden.pth")
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert time.monotonic() - start < FAST
    message = str(info.value)
    assert "cannot resolve huggingface.co (Temporary failure in name resolution)" in message
    assert "not downloaded: cannot resolve download.openmmlab.com" in message
    assert "set HF_HUB_OFFLINE=1" in message
    assert no_dns == ["huggingface.co", "download.openmmlab.com"]  # one check per host, nothing else tries


def test_without_network_the_caches_still_serve(monkeypatch, no_dns, tmp_path):
    cfg = register_golden(monkeypatch)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    model = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH)
    saved = model.save_pretrained(tmp_path / "saved")
    fill_hf_cache(tmp_path / "hub", cfg.hf_hub_id, {"model.safetensors": saved / "model.safetensors"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.monotonic()
    loaded = deeplabv3p.create_model(GOLDEN_NAME, pretrained=True)
    assert time.monotonic() - start < FAST
    assert loaded.pretrained_cfg.name == GOLDEN_NAME and not converted_path(cfg).exists()
    assert no_dns == ["huggingface.co"]


def test_a_refused_connection_is_offline_too(monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(OSError, match=rf"cannot connect to 127.0.0.1:{port} .*not in the .* HF_HUB_OFFLINE=1"):
        deeplabv3p.create_model("hf-hub:someone/model")
    assert time.monotonic() - start < FAST


def test_no_answer_within_the_timeout(monkeypatch):
    def silent(address: tuple[str, int], timeout: float) -> socket.socket:
        assert timeout == 0.5
        raise TimeoutError("timed out")

    monkeypatch.setenv(network.PROBE_TIMEOUT_ENV, "0.5")
    monkeypatch.setattr(socket, "create_connection", silent)
    assert network.unreachable("https://huggingface.co") == "no answer from huggingface.co:443 within 0.5 s"
    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a))
    assert network.unreachable("https://huggingface.co") is not None and calls == []  # remembered, not re-checked


def test_the_check_goes_to_the_proxy_and_can_be_turned_off(monkeypatch, http_server):
    monkeypatch.setenv("HTTPS_PROXY", http_server.url)  # a reachable "proxy" on loopback
    assert network.unreachable("https://huggingface.co") is None  # huggingface.co itself is never looked up
    host, port, where = network._target("https://huggingface.co")
    assert (host, port) == ("127.0.0.1", http_server._httpd.server_address[1]) and "proxy" in where
    monkeypatch.setenv("NO_PROXY", "huggingface.co")  # bypassed: the check goes to the host itself
    assert network._target("https://huggingface.co")[:2] == ("huggingface.co", 443)
    monkeypatch.setenv(network.PROBE_TIMEOUT_ENV, "0")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("the check is off"))
    assert network.unreachable("https://example.org") is None
    for bad in ("soon", "-1"):
        monkeypatch.setenv(network.PROBE_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=network.PROBE_TIMEOUT_ENV):
            network.unreachable("https://example.org")


def test_hf_hub_offline_skips_the_check(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("offline mode connects nowhere"))
    with pytest.raises(OSError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\)"):
        hub_file("someone/model", "config.json")


TIMM_ENCODER = "resnet18.a1_in1k"  # timm's weights for it are on the Hub: timm/resnet18.a1_in1k


def _build(**kwargs: object) -> deeplabv3p.DeepLabV3Plus:
    return deeplabv3p.create_model("deeplabv3plus", num_classes=3, aux_head=False, **kwargs)


def test_encoder_weights_without_network_fail_fast_naming_the_encoder_and_the_fix(monkeypatch, no_dns):
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    _build(encoder=TIMM_ENCODER)  # timm imported and warm: what is timed below is the check alone
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        _build(encoder=TIMM_ENCODER, encoder_pretrained=True)
    assert time.monotonic() - start < 1.0  # huggingface_hub's retries took ~50 s
    message = str(info.value)
    assert f"encoder {TIMM_ENCODER!r} needs timm's pretrained weights" in message
    assert "timm/resnet18.a1_in1k" in message and "not cached" in message
    assert "cannot resolve huggingface.co (Temporary failure in name resolution)" in message
    assert "'pretrained_cfg_overlay': {'file': 'PATH'}" in message and "encoder_pretrained=False" in message
    assert no_dns == ["huggingface.co"]


def test_a_hub_encoder_without_network_fails_fast_even_without_weights(monkeypatch, no_dns):
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        _build(encoder="hf-hub:timm/" + TIMM_ENCODER)  # timm reads the repo's config.json even for random weights
    assert time.monotonic() - start < FAST
    message = str(info.value)
    assert "needs the encoder's timm config (config.json of the Hub repo timm/resnet18.a1_in1k)" in message
    assert f"use the timm name {TIMM_ENCODER!r} instead of the Hub id" in message
    assert no_dns == ["huggingface.co"]


def test_cached_or_local_encoder_weights_need_no_network(monkeypatch, no_dns, tmp_path):
    import safetensors.torch
    import timm

    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    weights = {k: v + 1 for k, v in timm.create_model("resnet18").state_dict().items() if v.is_floating_point()}
    safetensors.torch.save_file(weights, tmp_path / "resnet18.safetensors")
    overlay = {"pretrained_cfg_overlay": {"file": str(tmp_path / "resnet18.safetensors")}}
    local = _build(encoder=TIMM_ENCODER, encoder_pretrained=True, encoder_kwargs=overlay)
    assert no_dns == []  # a local file: nothing looked up
    assert torch.equal(local.encoder.body.conv1.weight, weights["conv1.weight"])
    fill_hf_cache(tmp_path / "hub", "timm/" + TIMM_ENCODER, {"model.safetensors": tmp_path / "resnet18.safetensors"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = _build(encoder=TIMM_ENCODER, encoder_pretrained=True)
    assert torch.equal(cached.encoder.body.conv1.weight, weights["conv1.weight"])


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """HfApi's repo creation and upload replaced by recorders: whether anything was sent."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoUrl

    calls: list[str] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append("create_repo")
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: calls.append("upload_folder"))
    return calls


def _golden(monkeypatch: pytest.MonkeyPatch) -> deeplabv3p.DeepLabV3Plus:
    register_golden(monkeypatch)
    return deeplabv3p.create_model(GOLDEN_NAME, pretrained=True, checkpoint_path=GOLDEN_PTH)


def test_push_to_hub_without_network_fails_fast_and_sends_nothing(monkeypatch, no_dns, hub_calls):
    from deeplabv3p.pretrained.hub import HubUploadError

    model = _golden(monkeypatch)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    start = time.monotonic()
    with pytest.raises(HubUploadError) as info:
        model.push_to_hub("someone/repo")
    assert time.monotonic() - start < 1.0
    assert str(info.value) == (
        "cannot push the model to the Hub repo someone/repo: the Hub could not be reached (cannot resolve "
        "huggingface.co (Temporary failure in name resolution)); nothing was uploaded. Connect to the network (or "
        "set HTTPS_PROXY) and run it again"
    )
    assert hub_calls == [] and no_dns == ["huggingface.co"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUploadError, match=r"someone/repo: offline mode is on \(HF_HUB_OFFLINE=1\); unset it"):
        model.push_to_hub("someone/repo")
    assert hub_calls == []


def test_push_to_hub_when_the_connection_drops_says_so_in_one_line(monkeypatch, hub_calls):
    from huggingface_hub import HfApi

    from deeplabv3p.pretrained.hub import HubUploadError, connection_errors

    client_error = connection_errors()[-1]  # the HTTP client's base error (httpx2 or httpx), not an OSError
    model = _golden(monkeypatch)
    monkeypatch.setenv(network.PROBE_TIMEOUT_ENV, "0")  # the check passed; the upload itself fails

    def upload_folder(self, **kwargs):
        raise client_error("[Errno 101] Network is unreachable")

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    with pytest.raises(HubUploadError) as info:
        model.push_to_hub("someone/repo")
    assert str(info.value) == (
        f"cannot push the model to the Hub repo someone/repo: the request failed ({client_error.__name__}: [Errno "
        "101] Network is unreachable); nothing was committed. Run it again once the network is back"
    )
