"""The text ``.ncnn.param`` file of an ncnn export: its sibling weights file and the input shape it declares.

pnnx writes the graph's ``Input`` layer without a shape. The export declares one in that layer's own parameters
(``0=`` width, ``1=`` height, ``2=`` channels: ncnn's documented shape hint, which the runtime also uses to plan
its kernels): all three for a fixed-size export, the channels alone for a dynamic one. The loader reads it back,
so that a fixed-size file refuses other sizes with a clear error instead of silently mis-resizing.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".ncnn.param"
BIN_SUFFIX = ".ncnn.bin"
MAGIC = "7767517"  # the first line of every text ncnn param file

Shape = tuple[int, int, int, int]  # (N, C, H, W); -1 where dynamic


def bin_path(param: str | Path) -> Path:
    """``NAME.ncnn.bin`` beside ``NAME.ncnn.param`` (the weights ncnn loads with the graph)."""
    param = Path(param)
    stem = param.name[: -len(SUFFIX)] if param.name.endswith(SUFFIX) else param.stem
    return param.with_name(stem + BIN_SUFFIX)


def _input_line(lines: list[str], origin: str) -> int:
    """The index of the single ``Input`` layer's line."""
    if not lines or lines[0].strip() != MAGIC:
        raise ValueError(f"{origin} is not a text ncnn param file (its first line is not {MAGIC})")
    found = [i for i, line in enumerate(lines) if line.split()[:1] == ["Input"]]
    if len(found) != 1:
        raise ValueError(f"{origin} has {len(found)} Input layers; a deeplabv3p export has one")
    return found[0]


def declare_input(param: Path, channels: int, size: tuple[int, int] | None) -> None:
    """Write the input's channels (and, for a fixed-size export, its height and width) into the ``Input`` layer of
    `param`, replacing any shape it had."""
    lines = param.read_text(encoding="utf-8").splitlines()
    index = _input_line(lines, repr(str(param)))
    fields = [f for f in lines[index].split() if "=" not in f]  # type, name, counts, blob: drop old parameters
    h, w = size if size is not None else (0, 0)
    lines[index] = " ".join(fields + ([f"0={w}", f"1={h}"] if size is not None else []) + [f"2={channels}"])
    param.write_text("\n".join(lines) + "\n", encoding="utf-8")


def declared_input(param: Path) -> Shape:
    """The input shape `param` declares: ``(-1, C, H, W)`` with -1 for each dimension it leaves free."""
    lines = param.read_text(encoding="utf-8", errors="replace").splitlines()
    values: dict[str, int] = {}
    for field in lines[_input_line(lines, repr(str(param)))].split():
        key, eq, value = field.partition("=")
        if eq and value.lstrip("-").isdigit():
            values[key] = int(value)
    w, h, c = (values.get(k, 0) for k in ("0", "1", "2"))
    return (-1, c if c > 0 else -1, h if h > 0 else -1, w if w > 0 else -1)
