"""All-or-nothing file writes: the target appears complete or not at all, and no temporary file is left."""

from __future__ import annotations

import os

import pytest

from deeplabv3p.atomic import atomic_path, atomic_write_text


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "README.md", "card")
    finally:
        os.umask(umask)
    assert (tmp_path / "README.md").stat().st_mode & 0o777 == 0o644
