"""All-or-nothing file writes: the target appears complete or not at all, and no temporary file is left."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deeplabv3p import atomic
from deeplabv3p.atomic import atomic_folder, atomic_path, atomic_write_text, is_temporary, remove_stale


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


def test_a_writer_creating_a_private_file_still_gives_the_usual_permissions(tmp_path):
    umask = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "w.bin") as tmp:
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors creates its files
            os.close(fd)
    finally:
        os.umask(umask)
    assert (tmp_path / "w.bin").stat().st_mode & 0o777 == 0o640


def test_an_os_error_names_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        raise OSError(28, "No space left on device", str(tmp))
    assert info.value.errno == 28 and info.value.filename == str(target)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_atomic_folder_replaces_a_folder_in_one_step(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target) as staging:
        assert staging.parent == tmp_path and is_temporary(staging.name, of=["model"])
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_folder_failing_leaves_the_folder_and_no_staging(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OSError) as info, atomic_folder(target) as staging:
        raise OSError(28, "No space left on device", str(staging / "weights.bin"))
    assert info.value.filename == str(target / "weights.bin")  # the file it is about, inside the target
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_old_folder_set_aside_is_kept_until_its_name_exists_again(tmp_path):
    old = tmp_path / f".model.{2**22 + 1}-0123456789ab.old"  # above Linux's largest pid: its writer is gone
    old.mkdir()
    assert remove_stale(tmp_path, ["model"]) == [] and old.exists()  # the only copy: the swap was interrupted
    (tmp_path / "model").mkdir()
    assert remove_stale(tmp_path, ["model"]) == [old] and not old.exists()


def test_a_short_write_is_never_published(tmp_path):
    """A JPEG encoder writing straight to the descriptor ignores a short write at a full disk: the size check
    before the rename refuses the file (issue 18), for images and text alike, and leaves nothing behind."""
    from fault_helpers import on_a_full_disk
    from PIL import Image

    from deeplabv3p.inference.result import save_image_atomic

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(128, 128, 3), dtype=np.uint8))
    for name, write in (
        ("x.jpg", lambda path: save_image_atomic(rgb, path, quality=95)),
        ("x.png", lambda path: save_image_atomic(rgb, path)),
        ("x.txt", lambda path: atomic_write_text(path, "a" * 20000)),
    ):
        target = tmp_path / name
        error = on_a_full_disk(lambda target=target, write=write: write(target), 8192)
        assert str(target) in error, error
        assert list(tmp_path.iterdir()) == [], name
