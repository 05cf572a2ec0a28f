"""Is the network there? One quick TCP connection before a download is attempted.

Without it, a machine with no network and no ``HF_HUB_OFFLINE`` waits for huggingface_hub's retry schedule (about
24 s for one file) and then for urllib's timeout on the mmseg URL before saying anything. `unreachable` opens a TCP
connection to the host of the URL (or to the proxy ``HTTPS_PROXY`` / ``HTTP_PROXY`` names for it, as urllib and
huggingface_hub would use) with a short timeout: a failed name lookup, a refused or unroutable connection, or no
answer within ``DEEPLABV3P_PROBE_TIMEOUT`` seconds (default 3; 0 turns the check off) means offline. A failure is
remembered for 30 s per host, so the files of one model cost one check.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from urllib.parse import urlparse

PROBE_TIMEOUT_ENV = "DEEPLABV3P_PROBE_TIMEOUT"
DEFAULT_PROBE_TIMEOUT = 3.0
_REMEMBER_FAILURE_S = 30.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_failures: dict[tuple[str, int], tuple[float, str]] = {}


def probe_timeout() -> float:
    """Seconds the connection check waits (``DEEPLABV3P_PROBE_TIMEOUT``); 0 means no check."""
    value = os.environ.get(PROBE_TIMEOUT_ENV)
    if value is None or not value.strip():
        return DEFAULT_PROBE_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        raise ValueError(f"{PROBE_TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None
    if not timeout >= 0:
        raise ValueError(f"{PROBE_TIMEOUT_ENV} must be >= 0, got {value!r}")
    return timeout


def _target(url: str) -> tuple[str, int, str]:
    """(host, port, description) a request for `url` would first connect to: its proxy, or its own host."""
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError(f"cannot check the connection to {url!r}: it names no host")
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
        via = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if via.hostname:
            port = via.port or _DEFAULT_PORTS.get(via.scheme, 80)
            return via.hostname, port, f"the proxy {via.hostname}:{port} for {parsed.hostname}"
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 443)
    return parsed.hostname, port, f"{parsed.hostname}:{port}"


def unreachable(url: str) -> str | None:
    """None when a TCP connection towards `url` opens (or the check is off); otherwise why it did not, in words."""
    timeout = probe_timeout()
    if timeout == 0:
        return None
    host, port, where = _target(url)
    remembered = _failures.get((host, port))
    if remembered is not None and time.monotonic() - remembered[0] < _REMEMBER_FAILURE_S:
        return remembered[1]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as e:
        reason = f"cannot resolve {host} ({e.strerror or e})"
    except TimeoutError:
        reason = f"no answer from {where} within {timeout:g} s"
    except OSError as e:  # refused, network unreachable, no route to host
        reason = f"cannot connect to {where} ({e.strerror or e})"
    else:
        _failures.pop((host, port), None)
        return None
    _failures[(host, port)] = (time.monotonic(), reason)
    return reason
