"""The table `deeplabv3p.deploy.fastest` prints and caches: one row per backend it considered, with its speed,
its agreement with PyTorch fp32, and whether it was kept (and why not)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackendRow:
    """One backend's measurement.

    Attributes:
        name: ``pytorch``, ``pytorch-folded``, ``pytorch-bf16`` or a deployment format (``onnx``, ``openvino``, ...).
        ms: median milliseconds per call at the table's input size (None: not timed).
        labels: the least fraction of labels equal to PyTorch fp32's over the check sizes (None: not compared).
        rel_diff: the largest logit difference relative to the largest logit (None: not compared).
        kept: timed and within the bounds, so it could be chosen.
        why: why it was not kept (or ``"reference"`` for fp32 eager PyTorch, which every other row is compared to).
        path: the exported file in the cache, for deployment formats.
    """

    name: str
    ms: float | None = None
    labels: float | None = None
    rel_diff: float | None = None
    kept: bool = False
    why: str = ""
    path: str | None = None


@dataclass(frozen=True)
class BackendTable:
    """What `deeplabv3p.deploy.fastest` measured (or read back from its cache) and chose."""

    rows: tuple[BackendRow, ...]
    chosen: str
    input_size: tuple[int, int]
    threads: int
    cpu: str
    bounds: str
    date: str
    cached: bool = False
    key: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> BackendRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no backend {name!r} in the table; it has {[r.name for r in self.rows]}")

    def speedup(self, name: str) -> float | None:
        """How many times faster `name` runs than eager PyTorch fp32 (None where either was not timed)."""
        eager, this = self.rows[0].ms, self.row(name).ms
        return None if eager is None or this is None else eager / this

    def lines(self) -> list[str]:
        """The table as ``deeplabv3p benchmark-backends`` prints it."""
        h, w = self.input_size
        source = f"cached decision of {self.date} UTC" if self.cached else f"measured {self.date} UTC"
        out = [
            f"backends on {self.cpu}, {self.threads} thread(s), input 1x{h}x{w} ({source}); kept: {self.bounds}",
            f"{'backend':<16}{'ms':>10}{'vs eager':>10}{'labels':>10}{'logit diff':>12}  kept",
        ]
        for r in self.rows:
            speed = self.speedup(r.name)
            cells = [
                f"{r.ms:.1f}" if r.ms is not None else "-",
                f"{speed:.2f}x" if speed is not None else "-",
                f"{100 * r.labels:.2f}%" if r.labels is not None else "-",
                f"{r.rel_diff:.1e}" if r.rel_diff is not None else "-",
            ]
            verdict = ("yes" if r.kept else "no") + (f" ({r.why})" if r.why else "")
            mark = "  <- chosen" if r.name == self.chosen else ""
            out.append(f"{r.name:<16}{cells[0]:>10}{cells[1]:>10}{cells[2]:>10}{cells[3]:>12}  {verdict}{mark}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = True) -> BackendTable:
        """A table written by `to_dict` (a KeyError or TypeError for anything else)."""
        rows = tuple(BackendRow(**r) for r in data["rows"])
        fields = {k: v for k, v in data.items() if k not in ("rows", "input_size")}
        return cls(rows=rows, input_size=(int(data["input_size"][0]), int(data["input_size"][1])), cached=cached,
                   **fields)  # fmt: skip
