"""Helpers for the zoo/weights/hub tests: a narrow golden architecture registered as a pretrained tag, a local HTTP
server that plays both the checkpoint host and the Hugging Face Hub, and a filler for the Hugging Face cache layout.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from parity import PARITY, arrays

from deeplabv3p.pretrained import registry, zoo
from deeplabv3p.pretrained.config import PretrainedCfg

GOLDEN_PTH = PARITY / "r50_v1c_d8.pth"  # mmseg container {'meta', 'state_dict'} of the narrow R-50-D8 golden

# The golden's network (tests/data/parity/r50_v1c_d8.json) as an architecture of its own, so the full pipeline
# (registry -> download -> convert -> load) runs on a small model.
GOLDEN_ARCH = "deeplabv3plus_r50_d8_golden"
GOLDEN_TAG = "golden_97x131_1k"
GOLDEN_NAME = f"{GOLDEN_ARCH}.{GOLDEN_TAG}"
GOLDEN_CONFIG = zoo.ARCHITECTURES["deeplabv3plus_r50_d8"].replace(
    architecture=GOLDEN_ARCH,
    encoder_kwargs={"channels": (8, 16, 32, 64), "stem_type": "deep", "stem_width": 8},
    num_classes=7,
    decoder_channels=64,
    low_level_channels=12,
    aux_channels=32,
)
GOLDEN_CLASSES = tuple(f"class{i}" for i in range(7))
GOLDEN_PALETTE = tuple((30 * i, 255 - 30 * i, 10 * i) for i in range(7))
TOL = 1e-5


def golden_arrays() -> dict[str, torch.Tensor]:
    """Input and mmseg's outputs of the r50_v1c_d8 golden."""
    return arrays("r50_v1c_d8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def golden_cfg(**changes) -> PretrainedCfg:
    """A real zoo row's metadata, re-pointed at the golden network (``replace()`` of a published tag)."""
    base = registry.get_pretrained_cfg("deeplabv3plus_r50_d8.cityscapes_512x1024_80k")
    fields = dict(
        architecture=GOLDEN_ARCH,
        tag=GOLDEN_TAG,
        dataset="golden",
        num_classes=7,
        classes=GOLDEN_CLASSES,
        palette=GOLDEN_PALETTE,
        hf_hub_id=f"deeplabv3p/{GOLDEN_NAME}",
        url="http://127.0.0.1:9/unused.pth",
        sha256_prefix=sha256(GOLDEN_PTH)[:8],
    )
    fields.update(changes)
    return base.replace(**fields)


def register_golden(monkeypatch: pytest.MonkeyPatch, **changes) -> PretrainedCfg:
    """Put the golden architecture and a tag for it into the registry for the duration of a test."""
    cfg = golden_cfg(**changes)
    monkeypatch.setitem(zoo.ARCHITECTURES, GOLDEN_ARCH, GOLDEN_CONFIG)
    monkeypatch.setitem(zoo.PRETRAINED_CFGS, GOLDEN_NAME, cfg)
    return cfg


@dataclass
class Route:
    """What the server answers for one path: a body, or a failure mode."""

    body: bytes = b""
    status: int = 200
    mode: str = "ok"  # "ok" | "truncate" (announce the full length, send half, hang up)
    headers: dict[str, str] = field(default_factory=dict)


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving `routes`; also answers like the Hub for repos in `hub_repos`.

    Hub paths are ``/{org}/{name}/resolve/{revision}/{filename}``: files of a known repo get the headers
    huggingface_hub needs (``X-Repo-Commit``, ``ETag``); unknown repos get 404 ``X-Error-Code: RepoNotFound``.
    """

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hub_repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                server._answer(self, head=True)

            def do_GET(self) -> None:
                server._answer(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def _answer(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = handler.path.split("?")[0]
        self.requests.append((handler.command, path))
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        route = self._hub_route(*match.groups()) if match else self.routes.get(path, Route(b"not found", 404))
        handler.send_response(route.status)
        handler.send_header("Content-Length", str(len(route.body)))
        for key, value in route.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if head:
            return
        if route.mode == "truncate":
            handler.wfile.write(route.body[: len(route.body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(route.body)

    def _hub_route(self, repo_id: str, revision: str, filename: str) -> Route:
        files = self.hub_repos.get(repo_id)
        if files is None:
            return Route(b"repo not found", status=404, headers={"X-Error-Code": "RepoNotFound"})
        common = {"X-Repo-Commit": self.COMMIT}
        if revision not in ("main", self.COMMIT):
            return Route(b"", status=404, headers={"X-Error-Code": "RevisionNotFound", **common})
        if filename not in files:
            return Route(b"", status=404, headers={"X-Error-Code": "EntryNotFound", **common})
        body = files[filename]
        return Route(body, headers={"ETag": f'"{hashlib.sha256(body).hexdigest()}"', **common})

    def file_requests(self) -> list[tuple[str, str]]:
        """Requests other than huggingface_hub's own ``/api/`` housekeeping."""
        return [r for r in self.requests if not r[1].startswith("/api/")]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def fill_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "main") -> str:
    """Lay `files` out as huggingface_hub's cache does (``models--org--name/snapshots/<commit>/``, ``refs/<rev>``)."""
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit


def files_under(path: Path) -> list[str]:
    """Every file below `path` (hidden temporaries included), relative."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
