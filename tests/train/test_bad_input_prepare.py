"""Bad-input catalogue, ``prepare`` (issue 18): a damaged download fails before anything is written, naming the
archive member or the tile; temporaries left by a killed run are cleaned up."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from layout_trees import raw_potsdam

from deeplabv3p.atomic import temporary_name
from deeplabv3p.train.prepare import prepare


def _corrupt_member(raw: Path) -> str:
    """Flip bytes inside the val tile's label (the last tile prepared): its CRC no longer matches."""
    archive = raw / "5_Labels_all_noBoundary.zip"
    member = "top_potsdam_2_13_label_noBoundary.tif"
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 1000
    data[start : start + 64] = bytes(64)
    archive.write_bytes(bytes(data))
    return member


def _small_tile(raw: Path) -> str:
    raw_potsdam(raw, tiles={"2_10": (700, 1100), "2_13": (300, 600)})
    return "top_potsdam_2_13_RGB.tif"


# (case id, what to do to the fabricated download -> the name the error must hold, other words it must hold)
CASES: list[tuple[str, Callable[[Path], str], list[str]]] = [
    ("corrupt-zip-member", _corrupt_member, ["5_Labels_all_noBoundary.zip", "damaged", "nothing was written"]),
    ("tile-smaller-than-a-patch", _small_tile, ["2_13", "600x300", "512x512"]),
]


@pytest.mark.parametrize(("damage", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_damaged_download_fails_before_any_patch(tmp_path: Path, damage, words) -> None:
    raw = tmp_path / "raw"
    raw_potsdam(raw)
    named = damage(raw)
    with pytest.raises(ValueError) as info:
        prepare("potsdam", raw, tmp_path / "out", progress=False)
    message = str(info.value)
    assert named in message and all(word in message for word in words), message
    assert not list((tmp_path / "out").rglob("*.png"))


def test_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    """A ``kill -9`` between writing a patch's temporary and its rename leaves ``.NAME.<pid>-<hex>.incomplete``."""
    raw = tmp_path / "raw"
    raw_potsdam(raw)
    prepare("potsdam", raw, tmp_path / "out", progress=False)
    folder = tmp_path / "out" / "img_dir" / "train"
    victim = sorted(folder.iterdir())[0]
    ours = temporary_name(victim)  # the name pattern of our writers, with a process id that no longer runs
    stale = ours.with_name(ours.name.replace(f".{os.getpid()}-", ".999999999-"))
    stale.write_bytes(victim.read_bytes()[:100])
    victim.unlink()
    report = prepare("potsdam", raw, tmp_path / "out", progress=False)
    assert report.written == {"img_dir/train": 1} and victim.is_file()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
