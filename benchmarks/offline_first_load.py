"""How long the first load of a tag takes to fail on a machine without network (and without ``HF_HUB_OFFLINE``).

The machine is simulated in-process: every name lookup beyond loopback fails as a resolver without network does
(``EAI_AGAIN``), and the Hugging Face cache is an empty temporary folder. Nothing leaves the machine. Each case runs
`pretrained_weights_file` for one zoo tag (Hub repo, then the mmseg URL) until it raises:

- ``with check``: deeplabv3p's connection check (`deeplabv3p.pretrained.network`) sees the failed lookup first;
- ``without check``: ``DEEPLABV3P_PROBE_TIMEOUT=0``, i.e. huggingface_hub's own retry schedule, as before.

    python benchmarks/offline_first_load.py [--tag deeplabv3plus_r50_d8.cityscapes_512x1024_40k]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

# An empty Hugging Face home before huggingface_hub reads its environment.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="offline-bench-")
os.environ.pop("HF_HUB_OFFLINE", None)

from deeplabv3p.pretrained import network
from deeplabv3p.pretrained.fetch import WeightsUnavailableError, pretrained_weights_file
from deeplabv3p.pretrained.registry import get_pretrained_cfg

_real_getaddrinfo = socket.getaddrinfo


def _no_dns(host: object, *args: object, **kwargs: object):
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    return _real_getaddrinfo(host, *args, **kwargs)


def _time_failure(tag: str, probe_timeout: str | None) -> tuple[float, str]:
    if probe_timeout is None:
        os.environ.pop(network.PROBE_TIMEOUT_ENV, None)
    else:
        os.environ[network.PROBE_TIMEOUT_ENV] = probe_timeout
    network._failures.clear()
    start = time.perf_counter()
    try:
        pretrained_weights_file(get_pretrained_cfg(tag), progress=False)
    except WeightsUnavailableError as e:
        return time.perf_counter() - start, str(e).splitlines()[2].strip()
    raise RuntimeError("the weights were found: the simulated machine is not offline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="deeplabv3plus_r50_d8.cityscapes_512x1024_40k")
    args = parser.parse_args()
    socket.getaddrinfo = _no_dns
    rows = [("with check", *_time_failure(args.tag, None)), ("without check", *_time_failure(args.tag, "0"))]
    print(f"First load of {args.tag} on a machine without network (no HF_HUB_OFFLINE):\n")
    print("| case | seconds to the error | first reason |\n|---|---:|---|")
    for case, seconds, reason in rows:
        print(f"| {case} | {seconds:.3f} | {reason[:110]} |")


if __name__ == "__main__":
    main()
