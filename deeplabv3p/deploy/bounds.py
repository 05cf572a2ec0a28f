"""The documented agreement an export must reach with eager fp32 PyTorch, apart from the proof so that the command
line can show the bounds without importing torch: a full-precision export >= 99.9% of labels equal with a largest
logit difference <= 1e-3 of the largest logit (`FP32`), an INT8 export >= 99.5% of labels (`INT8`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """The least label agreement and the largest relative logit difference an export may show."""

    labels: float
    rtol: float | None

    def describe(self) -> str:
        rtol = f", relative logit difference <= {self.rtol:.0e}" if self.rtol is not None else ""
        return f"labels >= {100 * self.labels:.1f}% equal{rtol}"


FP32 = Bounds(labels=0.999, rtol=1e-3)
INT8 = Bounds(labels=0.995, rtol=None)
