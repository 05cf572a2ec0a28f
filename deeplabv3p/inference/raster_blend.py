"""mmseg's slide blend (logits summed over the windows that cover a pixel, divided by their count) over a raster
too large to hold, one row of windows at a time, turning every pixel into its label as soon as no later window
touches it.

mmseg places windows on a grid: every window of a row spans the same rows ``Y1:Y2``, and the next row starts at
``N`` (``Y1 <= N <= Y2``). When a row's windows arrive in order, columns left of the next window's start are
complete for that row: their rows ``Y1:N`` (no later row touches them) become labels at once, and their rows
``N:Y2`` (the next row's overlap) are carried as sums to the next row (`CarryBand`). The carry spans the raster's
width (classes x ``Y2 - N`` rows x width, float32: 147 MB for 6 classes, 384 rows and 16000 columns, the last row
of windows of a 16000-pixel raster with 512-pixel windows), so it lives in a temporary file: written left to right
as columns finish, read back left to right as the next row opens them. What is held in memory is the window-wide
band of columns still open, and labels in uint8 until they fill whole tile rows. Each pixel receives the same
additions in the same order as in `deeplabv3p.inference.pipeline.slide_inference`, and is divided by the same
count, so the labels are the same.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import cast

import numpy as np
import torch

from .labels import class_indices

Window = tuple[int, int, int, int]  # y1, y2, x1, x2


def coverage(windows: list[Window], size: int, lo: int, hi: int) -> torch.Tensor:
    """How many window extents ``(w[lo], w[hi])`` cover each index of one axis (on a grid, the count of windows
    covering pixel ``(y, x)`` is ``rows[y] * cols[x]``)."""
    count = torch.zeros(size, dtype=torch.float32)
    for a, b in {(w[lo], w[hi]) for w in windows}:
        count[a:b] += 1
    return count


def scaled_probs(scores: torch.Tensor, confidence: bool) -> np.ndarray:
    """Softmax probabilities of blended logits ``(K, h, w)`` times 255, rounded to uint8: every class, or with
    `confidence` the winning class's only."""
    probs = scores.float().softmax(dim=0)
    if confidence:
        probs = probs.max(dim=0, keepdim=True).values
    return (probs * 255.0).round().to(torch.uint8).cpu().numpy()


class CarryBand:
    """The sums a row of windows passes to the next row, ``(classes, rows, width)`` float32, in an unnamed
    temporary file in `folder` (the system's temporary folder when None), stored column after column so that any
    range of columns is one contiguous read. `write` and `read` take column ranges; nothing of the raster's width is
    held in memory. The file disappears when the band is closed or garbage-collected, also after a crash."""

    def __init__(self, classes: int, rows: int, width: int, folder: Path | None = None) -> None:
        self.classes, self.rows, self.width = classes, rows, width
        self.folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
        self._file: io.BufferedRandom | None = None
        if rows:  # closed by `close` (RowBlend.close), or with the object
            self._file = cast(io.BufferedRandom, tempfile.TemporaryFile(dir=folder))  # noqa: SIM115
        self._column = classes * rows * 4  # bytes per column

    def write(self, x0: int, block: torch.Tensor) -> None:
        """Store columns ``x0:x0 + w`` of the band from `block` ``(classes, rows, w)``."""
        if self._file is None:
            return
        data = block.detach().permute(2, 0, 1).to("cpu", torch.float32).contiguous().numpy()
        try:
            self._file.seek(x0 * self._column)
            self._file.write(data.data.cast("B"))
            self._file.flush()
        except OSError as e:  # the file has no name: say where it is and how large it grows
            raise OSError(
                e.errno,
                f"cannot store the sums the next row of windows shares with this one in {str(self.folder)!r} "
                f"({e.strerror}): they need {-(-self._column * self.width // 2**20)} MiB there; free space or "
                "write the output elsewhere",
            ) from e

    def read(self, x0: int, x1: int, device: torch.device) -> torch.Tensor:
        """Columns ``x0:x1`` of the band, ``(classes, rows, x1 - x0)`` on `device` (every column must be written)."""
        out = np.empty((x1 - x0, self.classes, self.rows), dtype=np.float32)
        if self._file is not None and out.size:
            self._file.seek(x0 * self._column)
            got = self._file.readinto(out.data.cast("B"))
            if got != out.nbytes:
                raise OSError(
                    f"the carried sums of columns {x0}:{x1} were not all written ({got} of {out.nbytes} bytes)"
                )
        return torch.from_numpy(out).permute(1, 2, 0).to(device)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RowBlend:
    """The blend of one raster's windows, fed in mmseg's order (`add`), giving finished label rows (`take`)."""

    def __init__(
        self,
        windows: list[Window],
        height: int,
        width: int,
        classes: int,
        device: torch.device,
        *,
        top: int = 0,
        masked: bool = False,
        nodata: int = 255,
        probs: str | None = None,
        spill: Path | None = None,
    ) -> None:
        self.height, self.width, self.classes, self.device = height, width, classes, device
        self.rows, self.cols = coverage(windows, height, 0, 1), coverage(windows, width, 2, 3)
        self.next_row = {}  # a row's (y1, y2) -> the first row of the next row of windows
        starts = sorted({(w[0], w[1]) for w in windows})
        for (y1, y2), following in zip(starts, [*starts[1:], (height, height)]):
            self.next_row[(y1, y2)] = following[0]
        self.masked, self.nodata, self.probs_kind = masked, nodata, probs
        self.label_dtype = np.uint8 if nodata <= 255 else np.uint16
        self.top = top  # first row of `labels`: rows above it are done (or, resuming, were done before)
        self.labels = np.zeros((0, width), dtype=self.label_dtype)
        bands = 0 if probs is None else 1 if probs == "confidence" else classes
        self.probs = np.zeros((bands, 0, width), dtype=np.uint8)
        self.span: tuple[int, int, int] | None = None  # the current row of windows: y1, y2, next row's y1
        self.spill = spill  # the folder of the carry's temporary files
        self.carry = CarryBand(classes, 0, width)  # sums of rows y1:y1 + carry.rows, from the previous row
        self.next_carry = self.carry
        self.open = torch.zeros((classes, 0, 0), device=device)  # sums of rows y1:y2, columns open_x:open_x + w
        self.open_x = 0
        self.valid: np.ndarray | None = None  # rows y1:y2, full width (masked rasters)

    @property
    def done(self) -> int:
        """Rows ``top:done`` hold labels."""
        return self.top + self.labels.shape[0]

    def _start_row(self, y1: int, y2: int) -> None:
        n = self.next_row[(y1, y2)]
        if self.span is not None:
            assert self.open_x == self.width, "a row of windows ended before its last column"
            self.carry.close()
            self.carry = self.next_carry
            old_valid, old_y1 = self.valid, self.span[0]
        else:
            old_valid, old_y1 = None, y1
        self.next_carry = CarryBand(self.classes, y2 - n, self.width, self.spill)
        self.open = torch.zeros((self.classes, y2 - y1, 0), device=self.device)
        self.open_x = 0
        if self.masked:
            valid = np.zeros((y2 - y1, self.width), dtype=bool)
            if old_valid is not None and self.carry.rows:
                valid[: self.carry.rows] = old_valid[y1 - old_y1 : y1 - old_y1 + self.carry.rows]
            self.valid = valid
        self.span = (y1, y2, n)
        grow = n - self.done
        if grow > 0:
            self.labels = np.concatenate([self.labels, np.zeros((grow, self.width), dtype=self.label_dtype)])
            self.probs = np.concatenate([self.probs, np.zeros((*self.probs.shape[:1], grow, self.width), np.uint8)], 1)

    def add(self, window: Window, logits: torch.Tensor | None, valid: np.ndarray | None, next_x1: int) -> None:
        """Add one window's logits ``(K, h, w)`` (None: a window of nodata only, not run), in mmseg's order, then
        finish the columns left of `next_x1` (the next window's first column in this row; the width after the last
        window of a row)."""
        y1, y2, x1, x2 = window
        if self.span is None or (y1, y2) != self.span[:2]:
            self._start_row(y1, y2)
        end = self.open_x + self.open.shape[2]
        if x2 > end:  # open the new columns, with the sums the previous row carried into them
            keep, carried = self.open.shape[2], self.carry.rows
            opened = torch.empty((self.classes, y2 - y1, keep + x2 - end), device=self.device)
            opened[:, :, :keep] = self.open
            if carried:
                opened[:, :carried, keep:] = self.carry.read(end, x2, self.device)
            opened[:, carried:, keep:] = 0.0
            self.open = opened
        if logits is not None:
            self.open[:, :, x1 - self.open_x : x2 - self.open_x] += logits
            if self.valid is not None and valid is not None:
                self.valid[:, x1:x2] = valid
        if next_x1 > self.open_x:
            self._finish(next_x1)

    def _finish(self, x_end: int) -> None:
        """Columns ``open_x:x_end`` of the current row are complete: labels for rows ``y1:n``, carry for ``n:y2``."""
        assert self.span is not None
        y1, _, n = self.span
        x0, cut = self.open_x, x_end - self.open_x
        block = self.open[:, :, :cut]
        self.next_carry.write(x0, block[:, n - y1 :])
        first = max(y1, self.top)  # resuming: rows above `top` were done before
        if n > first:
            scores = block[:, first - y1 : n - y1]  # divided in place: these columns are dropped below
            scores.div_((self.rows[first:n, None] * self.cols[None, x0:x_end]).to(scores.device))
            labels = class_indices(scores, dim=0).cpu().numpy().astype(self.label_dtype)
            probs = None if self.probs_kind is None else scaled_probs(scores, self.probs_kind == "confidence")
            if self.valid is not None:
                invalid = ~self.valid[first - y1 : n - y1, x0:x_end]
                labels[invalid] = self.nodata
                if probs is not None:
                    probs[:, invalid] = 0
            self.labels[first - self.top : n - self.top, x0:x_end] = labels
            if probs is not None:
                self.probs[:, first - self.top : n - self.top, x0:x_end] = probs
        self.open = self.open[:, :, cut:]
        self.open_x = x_end

    def finished(self) -> int:
        """The first row not finished yet: rows above it are labels once the current row of windows is complete."""
        if self.span is None or self.open_x < self.width:
            return self.top
        return max(self.top, self.span[2])

    def take(self, end: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (and probabilities) of rows ``top:end``, which must be finished; they are dropped here."""
        assert self.top <= end <= self.finished(), (self.top, end, self.finished())
        cut = end - self.top
        labels, self.labels = self.labels[:cut], self.labels[cut:]
        probs, self.probs = self.probs[:, :cut], self.probs[:, cut:]
        self.top = end
        return labels, (None if self.probs_kind is None else probs)

    def close(self) -> None:
        """Remove the carried sums' temporary files."""
        self.carry.close()
        self.next_carry.close()
