"""Bad-input catalogue, folder prediction (issue 18): an input that cannot be read is reported with its file and
reason (also in the manifest), skipped, and the others written; a file declaring more pixels than the per-image
budget is refused before it is decoded."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv3p.inference.pipeline import predict
from deeplabv3p.inference.writer import MANIFEST, write_predictions


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(height: int, width: int) -> bytes:
    """A PNG of about 60 bytes whose header declares `height` x `width` gray pixels (its data is a few rows)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1) * 2)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


# (case id, file name, its bytes, words the reason must hold besides the file's path)
UNREADABLE: list[tuple[str, str, Callable[[], bytes], list[str]]] = [
    ("zero-bytes-png", "bad.png", lambda: b"", ["cannot read"]),
    ("truncated-png", "bad.png", lambda: _encoded("PNG")[:300], ["cannot read"]),
    ("truncated-jpeg", "bad.jpg", lambda: _encoded("JPEG")[:200], ["cannot read"]),
    ("not-an-image", "bad.jpg", lambda: b"these are not the pixels you are looking for\n" * 4, ["cannot read"]),
    ("decompression-bomb-png", "bad.png", lambda: png_declaring(9500, 10000), ["9500x10000", "max_pixels"]),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "c.png"):  # the bad file sorts between them: the run goes on after it
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(images / name)
    return images


@pytest.mark.parametrize(("name", "content", "words"), [c[1:] for c in UNREADABLE], ids=[c[0] for c in UNREADABLE])
def test_an_unreadable_input_is_reported_and_skipped(model, folder, tmp_path, name, content, words):
    bad = folder / name
    bad.write_bytes(content())
    out = tmp_path / "out"
    summary = write_predictions(model, folder, out)
    assert (summary.total, summary.written) == (3, 2)
    ((path, reason),) = summary.failures
    assert path == bad and str(bad) in reason and all(word in reason for word in words), reason
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "c.png"]
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert [Path(r["input"]).name for r in records] == ["a.png", name, "c.png"]  # input order, the failure too
    assert records[1]["error"] == reason and "error" not in records[0] and "error" not in records[2]
    # a rerun tries it again, and once it is fixed, finishes the job and drops the error
    again = write_predictions(model, folder, out)
    assert (again.written, again.skipped, len(again.failures)) == (0, 2, 1)
    Image.new("RGB", (20, 30)).save(bad, format="PNG" if name.endswith(".png") else "JPEG")
    fixed = write_predictions(model, folder, out)
    assert (fixed.written, fixed.skipped, fixed.failures) == (1, 2, ())
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert len(records) == 3 and not any("error" in r for r in records)


def test_the_pixel_budget_is_checked_before_decoding(model, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(9500, 10000))  # 95 Mpx in ~100 bytes; PIL itself only warns
    with pytest.raises(ValueError, match="over the per-image pixel budget of 89478485"):
        predict(model, bomb)
    small = tmp_path / "small.png"
    Image.new("RGB", (30, 20)).save(small)
    with pytest.raises(ValueError, match=r"small.png' declares 20x30 \(H x W\) = 600 pixels.*max_pixels=N"):
        predict(model, small, max_pixels=599)
    assert predict(model, small, max_pixels=600).labels.shape == (20, 30)
    assert predict(model, small, max_pixels=0).labels.shape == (20, 30)  # 0: no budget
    ortho = tmp_path / "ortho.tif"
    Image.new("RGB", (30, 20)).save(ortho)
    with pytest.raises(ValueError, match=r"max_pixels=N.*streamed.*predict_raster\(model, PATH, 'labels.tif'\)"):
        predict(model, ortho, max_pixels=599)  # a TIFF over the budget: the streamed path is named
    with pytest.raises(ValueError, match=r"max_pixels=N\)?[^;]*$"):
        predict(model, small, max_pixels=599)  # not for other formats


def test_a_fifo_with_an_image_name_is_not_called_missing(model, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(OSError) as info:
        predict(model, [tmp_path / "pipe.png"])
    assert "is a FIFO" in str(info.value) and "does not exist" not in str(info.value)
