"""mmseg's slide blend (logits summed over the windows that cover a pixel, divided by their count) over a raster
too large to hold, one row of windows at a time, turning every pixel into its label as soon as no later window
touches it.

mmseg places windows on a grid: every window of a row spans the same rows ``Y1:Y2``, and the next row starts at
``N`` (``Y1 <= N <= Y2``). When a row's windows arrive in order, columns left of the next window's start are
complete for that row: their rows ``Y1:N`` (no later row touches them) become labels at once, and their rows
``N:Y2`` (the next row's overlap) are carried as sums. So what is held in float is the overlap band (classes x
``Y2 - N`` rows x width; nothing when the stride is the window) and the window-wide strip of columns still open;
labels wait in uint8 until they fill whole tile rows. Each pixel receives the same additions in the same order as
in `deeplabv3p.inference.pipeline.slide_inference`, and is divided by the same count, so the labels are the same.
"""

from __future__ import annotations

import numpy as np
import torch

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
        self.carry = torch.zeros((classes, 0, width), device=device)  # sums of rows y1:carry_end
        self.next_carry = self.carry
        self.open = self.carry  # sums of rows y1:y2, columns open_x:open_x + open.shape[2]
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
            self.carry = self.next_carry
            old_valid, old_y1 = self.valid, self.span[0]
        else:
            self.carry = torch.zeros((self.classes, 0, self.width), device=self.device)
            old_valid, old_y1 = None, y1
        self.next_carry = torch.zeros((self.classes, y2 - n, self.width), device=self.device)
        self.open = torch.zeros((self.classes, y2 - y1, 0), device=self.device)
        self.open_x = 0
        if self.masked:
            valid = np.zeros((y2 - y1, self.width), dtype=bool)
            if old_valid is not None and self.carry.shape[1]:
                valid[: self.carry.shape[1]] = old_valid[y1 - old_y1 : y1 - old_y1 + self.carry.shape[1]]
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
            fresh = torch.zeros((self.classes, y2 - y1, x2 - end), device=self.device)
            fresh[:, : self.carry.shape[1]] = self.carry[:, :, end:x2]
            self.open = torch.cat([self.open, fresh], 2)
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
        self.next_carry[:, :, x0:x_end] = block[:, n - y1 :]
        first = max(y1, self.top)  # resuming: rows above `top` were done before
        if n > first:
            sums = block[:, first - y1 : n - y1]
            scores = sums / (self.rows[first:n, None] * self.cols[None, x0:x_end]).to(sums.device)
            labels = scores.argmax(dim=0).cpu().numpy().astype(self.label_dtype)
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
