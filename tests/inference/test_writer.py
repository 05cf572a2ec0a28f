"""write_predictions: sharded over processes, every input written once, resumable, one merged manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deeplabv3p.inference.writer import MANIFEST, merge_manifest, write_predictions


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, size=(40 + 4 * i, 56, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    return images


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != MANIFEST}


def _manifest(folder):
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


def test_two_shards_write_what_one_process_writes(model, folder, tmp_path):
    single = write_predictions(model, folder, tmp_path / "single", overlay=True)
    assert (single.total, single.share, single.written, single.skipped) == (5, 5, 5, 0)
    sharded = tmp_path / "sharded"
    summaries = [write_predictions(model, folder, sharded, overlay=True, shard=(r, 2)) for r in (0, 1)]
    assert [(s.share, s.written, s.manifest) for s in summaries] == [(3, 3, None), (2, 2, None)]  # no group: no merge
    assert sorted(p.name for p in sharded.glob(".manifest.rank*.jsonl")) == [".manifest.rank0.jsonl",
                                                                              ".manifest.rank1.jsonl"]  # fmt: skip
    merge_manifest(folder, sharded, overlay=True)
    assert _files(sharded) == _files(tmp_path / "single")  # byte-identical, part files gone
    records = _manifest(sharded)
    assert [r["input"] for r in records] == [str(folder / f"im{i}.png") for i in range(5)]
    assert [r["rank"] for r in records] == [0, 1, 0, 1, 0]
    assert [r["size"] for r in records] == [[40 + 4 * i, 56] for i in range(5)]
    assert all(r["seconds"] > 0 and r["overlay"].endswith("_overlay.jpg") for r in records)


def test_a_rerun_does_only_what_is_missing(model, folder, tmp_path):
    out = tmp_path / "out"
    write_predictions(model, folder, out)
    first = _manifest(out)
    (out / "im3.png").unlink()
    Image.new("L", (56, 44)).save(out / "im1.png")  # a complete image: a rerun keeps it, resume=False would not
    stale = (out / "im1.png").read_bytes()
    complete = (out / "im2.png").read_bytes()
    (out / "im2.png").write_bytes(complete[: len(complete) // 2])  # cut short (a full disk, an older writer)
    summary = write_predictions(model, folder, out)
    assert (summary.written, summary.skipped) == (2, 3)
    assert (out / "im1.png").read_bytes() == stale and (out / "im2.png").read_bytes() == complete
    records = _manifest(out)
    assert [r["input"] for r in records] == [r["input"] for r in first]
    assert records[3]["seconds"] != first[3]["seconds"] and records[0] == first[0]
    assert records[2]["seconds"] != first[2]["seconds"]
    assert write_predictions(model, folder, out, resume=False).written == 5


def test_an_output_without_a_record_is_found_and_a_cut_line_skipped(model, folder, tmp_path):
    out = tmp_path / "out"
    write_predictions(model, folder, out, shard=(0, 2))
    part = out / ".manifest.rank0.jsonl"
    lines = part.read_text().splitlines()
    part.write_text(lines[0] + "\n" + lines[1][:20])  # a crash cut the second record short
    merge_manifest(folder, out)
    records = _manifest(out)
    assert [r["input"].rsplit("/", 1)[1] for r in records] == ["im0.png", "im2.png", "im4.png"]  # rank 1 never ran
    assert records[0]["seconds"] > 0 and records[1]["seconds"] is None and records[1]["size"] == [48, 56]


def test_bad_jobs_fail_before_writing(model, folder, tmp_path):
    with pytest.raises(ValueError, match="also an input folder: a rerun would read the predictions as images"):
        write_predictions(model, folder, folder)
    with pytest.raises(ValueError, match="would overwrite an input"):
        write_predictions(model, sorted(folder.glob("*.png")), folder)
    with pytest.raises(ValueError, match="needs image files"):
        write_predictions(model, np.zeros((40, 40, 3), np.uint8), tmp_path / "o")
    with pytest.raises(ValueError, match="shard must be"):
        write_predictions(model, folder, tmp_path / "o", shard=(2, 2))
    with pytest.raises(ValueError, match="needs a window"):
        write_predictions(model, folder, tmp_path / "o", mode="slide")
    assert not (tmp_path / "o").exists()


def test_hidden_files_are_never_inputs(model, folder, tmp_path):
    """macOS ``._NAME`` resource forks, editors' and our own temporaries look like images by their extension."""
    (folder / "._im0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".junk.png").write_bytes(b"not an image")
    summary = write_predictions(model, folder, tmp_path / "out")
    assert (summary.total, summary.written) == (5, 5)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"im{i}.png" for i in range(5)]
