"""Publishing the zoo: `deeplabv3p convert --all --from DIR (--push-to-hub ORG | --out DIR)` on random checkpoints
of registered test tags, an HfApi test double, resuming, and loading the pushed repos through a local Hub."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling
from zoo_helpers import GOLDEN_ARCH, GOLDEN_CONFIG, GOLDEN_PTH, golden_cfg, sha256

import deeplabv3p
from deeplabv3p import cli
from deeplabv3p.pretrained import zoo
from deeplabv3p.pretrained.network import PROBE_TIMEOUT_ENV
from deeplabv3p.pretrained.publish import publish_zoo

ORG = zoo.HUB_ORG
TAGS = ("golden_a_1k", "golden_b_1k", "golden_c_1k")  # c's file is not the published one (sha256 mismatch)


def _git_blob_id(data: bytes) -> str:
    """What git itself says the blob id of `data` is (the Hub lists small files by it)."""
    return (
        subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )


class FakeHub:
    """The part of huggingface_hub.HfApi that publishing uses, over an in-memory store of repos."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.created: list[tuple[str, bool | None]] = []
        self.uploads: list[str] = []

    def api(self, **kwargs: object) -> FakeHub:  # stands in for HfApi(library_name=..., library_version=...)
        return self

    def repo_exists(self, repo_id: str, **kwargs: object) -> bool:
        return repo_id in self.repos

    def model_info(self, repo_id: str, *, files_metadata: bool = False, **kwargs: object) -> SimpleNamespace:
        assert files_metadata, "the skip check needs the files' hashes"
        siblings = []
        for name, data in self.repos[repo_id].items():
            if name.endswith(".safetensors"):  # stored in LFS on the Hub
                lfs = BlobLfsInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest(), pointer_size=134)
                siblings.append(RepoSibling(rfilename=name, size=len(data), blob_id="0" * 40, lfs=lfs))
            else:
                siblings.append(RepoSibling(rfilename=name, size=len(data), blob_id=_git_blob_id(data)))
        return SimpleNamespace(id=repo_id, siblings=siblings)

    def create_repo(self, repo_id: str, *, private: bool | None = None, exist_ok: bool = False, **kwargs: object):
        assert exist_ok
        self.created.append((repo_id, private))
        self.repos.setdefault(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})

    def upload_folder(self, *, repo_id: str, folder_path: str, commit_message: str, **kwargs: object) -> str:
        assert repo_id in self.repos, "upload before create_repo"
        for path in Path(folder_path).iterdir():
            self.repos[repo_id][path.name] = path.read_bytes()
        self.uploads.append(repo_id)
        return f"https://huggingface.co/{repo_id}/commit/{len(self.uploads)}"


def _random_checkpoint(path: Path, seed: int) -> None:
    """The golden mmseg checkpoint with every float tensor scaled by random factors in [0.9, 1.1]."""
    container = torch.load(GOLDEN_PTH, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(seed)
    container["state_dict"] = {
        k: v * (0.9 + 0.2 * torch.rand(v.shape, generator=generator)) if v.is_floating_point() else v
        for k, v in container["state_dict"].items()
    }
    torch.save(container, path)


@pytest.fixture
def zoo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of original checkpoints for three registered test tags of the golden architecture."""
    monkeypatch.setitem(zoo.ARCHITECTURES, GOLDEN_ARCH, GOLDEN_CONFIG)
    folder = tmp_path / "mmseg"
    folder.mkdir()
    for seed, tag in enumerate(TAGS):
        filename = f"deeplabv3plus_golden_{tag}.pth"
        _random_checkpoint(folder / filename, seed)
        prefix = sha256(folder / filename)[:8] if tag != "golden_c_1k" else "0badc0de"
        cfg = golden_cfg(
            tag=tag,
            url=f"http://127.0.0.1:9/v0.5/{filename}",
            sha256_prefix=prefix,
            hf_hub_id=f"{ORG}/{GOLDEN_ARCH}.{tag}",
        )
        monkeypatch.setitem(zoo.PRETRAINED_CFGS, f"{GOLDEN_ARCH}.{tag}", cfg)
    return folder


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", fake.api)
    monkeypatch.setenv(PROBE_TIMEOUT_ENV, "0")  # the fake Hub is there: no connection check before pushing
    return fake


def _name(tag: str) -> str:
    return f"{GOLDEN_ARCH}.{tag}"


def test_convert_all_pushes_every_tag_found_and_skips_what_is_already_there(zoo_dir, hub, capsys):
    code = cli.main(["convert", "--all", "--from", str(zoo_dir), "--push-to-hub", ORG])
    out, err = capsys.readouterr()
    assert code == 1  # golden_c failed, the others went on
    assert f"{_name('golden_a_1k')}: uploaded" in out and f"{_name('golden_b_1k')}: uploaded" in out
    assert f"{_name('golden_c_1k')} failed" in err and "does not start with 0badc0de" in err
    assert f"{len(deeplabv3p.list_pretrained()) - 3} tags not in" in out
    assert sorted(hub.uploads) == [f"{ORG}/{_name('golden_a_1k')}", f"{ORG}/{_name('golden_b_1k')}"]
    files = hub.repos[f"{ORG}/{_name('golden_a_1k')}"]
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    config = json.loads(files["config.json"])
    assert config["pretrained_cfg"]["hf_hub_id"] == f"{ORG}/{_name('golden_a_1k')}"
    source = zoo_dir / "deeplabv3plus_golden_golden_a_1k.pth"
    card = files["README.md"].decode()
    for text in (
        "http://127.0.0.1:9/v0.5/deeplabv3plus_golden_golden_a_1k.pth",  # the source checkpoint
        f"sha256 {sha256(source)}",  # and its full digest
        "license: apache-2.0",
        "| mIoU, single scale | 80.09 |",  # the published metrics of the row the test tags copy
        "## Test settings",
        "resize to fit 2048x1024 (long x short side, keep ratio); whole image; align_corners=False",
        "ratios 0.5, 0.75, 1, 1.25, 1.5, 1.75 of the test scale + horizontal flip",
        f"deeplabv3p evaluate --model {_name('golden_a_1k')} --data DATASET_FOLDER",
    ):
        assert text in card, text

    # resumed: nothing changed, nothing uploaded
    assert cli.main(["convert", "--all", "--from", str(zoo_dir), "--push-to-hub", ORG]) == 1
    assert f"{_name('golden_a_1k')}: unchanged" in capsys.readouterr().out
    assert len(hub.uploads) == 2
    # a repo missing a file (an interrupted upload) is completed; the other stays untouched
    del hub.repos[f"{ORG}/{_name('golden_b_1k')}"]["README.md"]
    publish_zoo(zoo_dir, org=ORG)
    assert hub.uploads[2:] == [f"{ORG}/{_name('golden_b_1k')}"]
    assert "README.md" in hub.repos[f"{ORG}/{_name('golden_b_1k')}"]


def test_pushed_repos_serve_create_model_by_tag(zoo_dir, hub, http_server):
    results = publish_zoo(zoo_dir, org=ORG, names=[_name("golden_a_1k")])
    assert [(r.name, r.status) for r in results] == [(_name("golden_a_1k"), "uploaded")]
    repo_id = f"{ORG}/{_name('golden_a_1k')}"
    http_server.hub_repos[repo_id] = hub.repos[repo_id]  # what the Hub serves once the push happened for real
    model = deeplabv3p.create_model(_name("golden_a_1k"), pretrained=True)
    assert ("GET", f"/{repo_id}/resolve/main/model.safetensors") in http_server.file_requests()
    local = deeplabv3p.create_model(
        _name("golden_a_1k"), pretrained=True, checkpoint_path=zoo_dir / "deeplabv3plus_golden_golden_a_1k.pth"
    )
    for key, value in local.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not torch.equal(local.state_dict()["classifier.conv.weight"], deeplabv3p.create_model(
        _name("golden_b_1k"), pretrained=True, checkpoint_path=zoo_dir / "deeplabv3plus_golden_golden_b_1k.pth"
    ).state_dict()["classifier.conv.weight"])  # fmt: skip


def test_convert_all_out_writes_loadable_folders(zoo_dir, tmp_path, capsys):
    out = tmp_path / "published"
    assert cli.main(["convert", "--all", "--from", str(zoo_dir), "--out", str(out)]) == 1
    assert "2 written" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [_name("golden_a_1k"), _name("golden_b_1k")]
    model = deeplabv3p.create_model(str(out / _name("golden_a_1k")))
    assert model.pretrained_cfg.name == _name("golden_a_1k")
    assert model.pretrained_cfg.hf_hub_id == f"{ORG}/{_name('golden_a_1k')}"


def test_convert_all_bad_input(zoo_dir, tmp_path, hub, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--all", "--out", str(tmp_path)], "--all needs --from DIR"),
        (["--all", "--from", str(zoo_dir)], "--out FOLDER and/or --push-to-hub ORG"),
        (["--all", "--from", str(empty), "--out", str(tmp_path)], "holds no checkpoint of the zoo"),
        (["--all", "--from", str(tmp_path / "nope"), "--out", str(tmp_path)], "does not exist"),
        (["--all", "--from", str(zoo_dir), "--push-to-hub", "a/b"], "organisation must be a name without '/'"),
        ([str(GOLDEN_PTH), "--all", "--from", str(zoo_dir), "--out", str(tmp_path)], "instead of a checkpoint"),
        ([str(GOLDEN_PTH), "--model", "x", "--out", str(tmp_path), "--push-to-hub", ORG], "go with --all"),
    ]
    for args, message in cases:
        assert cli.main(["convert", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert hub.uploads == []


def test_another_org_is_told_where_create_model_looks(zoo_dir, hub, capsys):
    cli.main(["convert", "--all", "--from", str(zoo_dir), "--push-to-hub", "someone"])
    assert "hf-hub:someone/ARCH.TAG" in capsys.readouterr().out
    assert f"someone/{_name('golden_a_1k')}" in hub.repos


def test_convert_all_push_without_network_fails_before_converting(zoo_dir, monkeypatch, capsys, tmp_path):
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:  # a loopback port nobody listens on: the Hub refuses connections
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    code = cli.main(["convert", "--all", "--from", str(zoo_dir), "--push-to-hub", ORG, "--out", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""  # nothing converted, nothing written
    assert f"cannot push the zoo to the Hub organisation {ORG}: the Hub could not be reached (cannot connect to " in err
    assert not (tmp_path / "o").exists()
