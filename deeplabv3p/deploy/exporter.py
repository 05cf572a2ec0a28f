"""`export`: write a model in a deployment format, prove the file segments as PyTorch does, then publish it.

The format's writer fills a staging folder beside the target; the file is loaded back by its own runtime and run
on held-out inputs (the user's images, or fixed synthetic ones) at the export size and, for dynamic shapes, at a
second size; only if labels and logits agree within the bounds (`deeplabv3p.deploy.proof`) is it moved into
place. A format that cannot run on this machine (Core ML on Linux, TensorRT without a GPU) is checked by its
inspector instead (inputs, outputs, shapes, metadata), and the report says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_files
from ..fields import check_pair
from .formats import Format, get_format
from .metadata import model_config
from .proof import FP32, Agreement, Bounds, ExportCheckError, compare, synthetic_inputs

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork


@dataclass(frozen=True)
class ExportReport:
    """What `export` wrote and how the written file compares with the PyTorch model."""

    path: Path
    format: str
    agreements: tuple[Agreement, ...] = ()
    bounds: Bounds = FP32
    notes: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """The report as printed by ``deeplabv3p export``."""
        out = [f"wrote {self.path} ({self.format})"]
        out += [a.describe(self.format) for a in self.agreements]
        if self.agreements:
            out.append(f"within the documented bound ({self.bounds.describe()})")
        return out + list(self.notes)


def check_target(path: str | os.PathLike, fmt: Format) -> Path:
    """`path` as the target of a `fmt` export: the format's ending, an existing folder, not a folder itself."""
    path = Path(path)
    if not path.name.endswith(fmt.suffix):
        raise ValueError(
            f"path {str(path)!r} does not end with {fmt.suffix!r}, the ending of the {fmt.name} format (loading "
            f"tells formats by their ending): use e.g. {path.stem or 'model'}{fmt.suffix}"
        )
    if path.is_dir() and not fmt.folder:
        raise ValueError(f"path {str(path)!r} is a folder; give a file name such as model{fmt.suffix}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(path.parent)!r} of the output path does not exist: create it first")
    return path


def check_sizes(input_size: tuple[int, int], dynamic: bool, minimum: int) -> list[tuple[int, int]]:
    """The input sizes an export is proven at: the export size, and for dynamic shapes an odd second one."""
    h, w = input_size
    return [(h, w)] if not dynamic else [(h, w), (max(minimum, h // 2 + 7), max(minimum, w // 2 + 5))]


def export(
    model: DeepLabV3PlusNetwork,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    input_size: Sequence[int] = (512, 512),
    dynamic: bool = True,
    check: bool = True,
    check_images: Any = None,
    bounds: Bounds = FP32,
    **options: Any,
) -> ExportReport:
    """Export `model` to `path` in `format`, prove it against the model, and publish it atomically.

    Args:
        model: a deeplabv3p model (exported in eval mode, float32, from a copy: the model is not modified).
        path: the exported file, ending as the format says (``model.onnx``, ``model.xml``, ``model.pte``...).
        format: one of `deeplabv3p.deploy.FORMATS`.
        input_size: (height, width) of the example input (the fixed size when not `dynamic`).
        dynamic: free batch, height and width where the format supports it.
        check: run the written file and compare it with the model before publishing it (formats that cannot run
            here are inspected instead).
        check_images: images (paths, a folder, arrays) to prove the export on, through predict's preprocessing;
            default: fixed synthetic inputs.
        bounds: the agreement the file must reach (default `deeplabv3p.deploy.proof.FP32`).
        options: format-specific writer options (``opset=`` for ONNX).

    Raises:
        ExportCheckError: the written file does not segment as the model does; nothing is published.
    """
    from .calibration import check_inputs

    fmt = get_format(format)
    config = model_config(model)
    size = check_pair("input_size", input_size, config.output_stride)
    fmt.check_dynamic(dynamic, size)
    target = check_target(path, fmt)
    fmt.require_export()
    runs = check and fmt.runs_on_cpu
    if runs:
        fmt.require_run()
    writer = fmt.write_function()
    agreements: list[Agreement] = []
    notes: list[str] = []
    with atomic_files(target) as staging:
        staged = staging / target.name
        writer(model, staged, input_size=size, dynamic=dynamic, **options)
        if runs:
            backend = fmt.load_function()(staged)
            for at in check_sizes(size, dynamic, config.output_stride):
                inputs = (
                    check_inputs(model, check_images, at)
                    if check_images is not None
                    else synthetic_inputs(config.in_chans, at)
                )
                agreements.append(compare(model, backend, inputs))
            failed = [a for a in agreements if not a.within(bounds)]
            if failed:
                raise ExportCheckError(
                    f"the {fmt.name} export does not segment as the PyTorch model does (required: "
                    f"{bounds.describe()}); nothing was written to {str(target)!r}:\n  "
                    + "\n  ".join(a.describe(fmt.name) for a in failed)
                )
        elif check and fmt.inspector is not None:
            notes += fmt.inspect_function()(staged, model, input_size=size, dynamic=dynamic)
        elif check:
            notes.append(f"not run: a {fmt.name} export cannot run on this machine ({fmt.summary})")
    return ExportReport(target, fmt.name, tuple(agreements), bounds, tuple(notes))
