"""Test-wide fixtures: no network beyond loopback, deterministic torch, small thread count."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"

torch.set_num_threads(2)


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple):
        address = address[0]
    if not isinstance(address, str):  # AF_UNIX paths and the like never leave the machine
        return True
    if address in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: resolving it already means going out


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection that would leave the machine: tests are offline by construction."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guard(address: object) -> None:
        if not _is_loopback(address):
            raise RuntimeError(f"test tried to reach {address!r}: only loopback connections are allowed")

    def connect(self: socket.socket, address: object) -> None:
        if self.family != socket.AF_UNIX:  # a Unix socket is a path on this machine (DataLoader workers use them)
            guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if self.family != socket.AF_UNIX:
            guard(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object):
        guard(host if isinstance(host, str) else "localhost")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the Hugging Face cache at an empty temporary folder so the user's cache never leaks in."""
    from huggingface_hub import constants

    hf_home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("DEEPLABV3P_CACHE", raising=False)
    # huggingface_hub reads its environment once, at import: patch the paths it derived from HF_HOME then.
    real_home = constants.HF_HOME
    for name in dir(constants):
        value = getattr(constants, name)
        if name.isupper() and isinstance(value, str) and value.startswith(real_home):
            monkeypatch.setattr(constants, name, str(hf_home) + value[len(real_home) :])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch):
    """A server on 127.0.0.1 (tests/zoo_helpers.py) for checkpoint URLs, also set as huggingface_hub's Hub endpoint."""
    from huggingface_hub import constants
    from zoo_helpers import LocalServer

    server = LocalServer()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model():
    """The R-18-D8 slide-mode parity network (mmseg's weights), one per test module; modules that need another
    network define their own `model`."""
    from parity import build

    return build("r18_v1b_d8_slide")
