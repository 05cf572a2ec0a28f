"""Finished strips of a raster prediction, kept on disk beside the output until the output is complete, so that a
killed run resumes at its first unfinished strip.

For an output ``DIR/NAME.tif`` the strips live in ``DIR/.NAME.tif.strips/`` (hidden: never an input, never taken
for an output): one ``.npy`` file per array of a strip (``labels_<y1>_<y2>.npy``, ``probs_<y1>_<y2>.npy``), each
written atomically, and ``progress.json``, rewritten atomically after each strip, holding the job's fingerprint (the
input file, its size and modification time, the settings) and the row ranges done, in order. A rerun of the same
job continues after the last recorded strip; a different job (another input, changed settings or weights) starts
over. The folder is removed once the output is published.

Why strips on disk rather than writing into the GeoTIFF as we go: a GeoTIFF being written is not readable until
GDAL closes it (its tile index is written last), so a killed writer leaves nothing to resume from.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text

PROGRESS = "progress.json"


def strips_folder(out: Path) -> Path:
    """The folder of `out`'s finished strips."""
    return out.with_name(f".{out.name}.strips")


class StripStore:
    """The finished strips of one output (see the module docstring)."""

    def __init__(self, out: Path, fingerprint: dict[str, Any]) -> None:
        self.folder = strips_folder(out)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON
        self.done: list[tuple[int, int]] = []

    @property
    def rows_done(self) -> int:
        """Rows ``0:rows_done`` are finished."""
        return self.done[-1][1] if self.done else 0

    def open(self, resume: bool = True) -> int:
        """Take up the strips of an earlier run of this job (with `resume`), else start empty; returns the rows
        done. Strips of another job, or a progress file that cannot be read, are removed."""
        if resume:
            try:
                progress = json.loads((self.folder / PROGRESS).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                progress = None
            if isinstance(progress, dict) and progress.get("fingerprint") == self.fingerprint:
                strips = [tuple(s) for s in progress.get("strips", [])]
                if all(self._has(s) for s in strips) and _contiguous(strips):
                    self.done = [(int(a), int(b)) for a, b in strips]
                    return self.rows_done
        self.remove()
        self.folder.mkdir(parents=True)
        self._record()
        return 0

    def _path(self, key: str, strip: tuple[int, int]) -> Path:
        return self.folder / f"{key}_{strip[0]}_{strip[1]}.npy"

    def _has(self, strip: tuple[int, ...]) -> bool:
        return len(strip) == 2 and self._path("labels", (int(strip[0]), int(strip[1]))).is_file()

    def _record(self) -> None:
        progress = {"fingerprint": self.fingerprint, "strips": [list(s) for s in self.done]}
        atomic_write_text(self.folder / PROGRESS, json.dumps(progress))

    def add(self, y1: int, y2: int, arrays: dict[str, np.ndarray]) -> None:
        """Store rows ``y1:y2`` (the next after `rows_done`): each array atomically, then the progress record."""
        if y1 != self.rows_done or y2 <= y1:
            raise AssertionError(f"strip {y1}:{y2} does not follow the rows done ({self.rows_done})")
        for key, array in arrays.items():
            encoded = io.BytesIO()
            np.save(encoded, np.ascontiguousarray(array), allow_pickle=False)
            atomic_write_bytes(self._path(key, (y1, y2)), encoded.getvalue())
        self.done.append((y1, y2))
        self._record()

    def load(self, key: str, strip: tuple[int, int]) -> np.ndarray:
        """One stored array of a strip (memory-mapped: read as it is used)."""
        return np.load(self._path(key, strip), mmap_mode="r", allow_pickle=False)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _contiguous(strips: list[tuple[Any, ...]]) -> bool:
    end = 0
    for strip in strips:
        if len(strip) != 2 or int(strip[0]) != end or int(strip[1]) <= end:
            return False
        end = int(strip[1])
    return True
