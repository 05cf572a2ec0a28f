"""Finding a split's files and pairing each image with its label, with errors that say what was expected where and
what was found (the machinery under `deeplabv3p.train.layouts`).

A *part* is one image folder and one label folder: *scanned* (every file ending with the image suffix, recursively,
names starting with ``.`` skipped, each label found by replacing that suffix with the label suffix in the relative
path, sorted by image path) or *listed* (one name per line of a split file, the suffixes added, in file order), as
mmsegmentation 1.x's ``BaseSegDataset`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..fields import absent

__all__ = ["MAX_LISTED", "LabelSource", "Part", "describe_folder", "listing", "pair_part", "subfolders"]

MAX_LISTED = 10


def listing(items: Sequence[object]) -> str:
    """The first `MAX_LISTED` items, comma-separated, and how many more: a long list of files in an error message."""
    shown = ", ".join(str(p) for p in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


@dataclass(frozen=True)
class LabelSource:
    """One way a part's labels may be stored: a file suffix, how raw values map to labels, which raw values a
    correct file holds (for the audit) and what to say when a file holds others."""

    suffix: str
    label_map: Mapping[int, int] | None = None
    map_default: int | None = None
    raw_values: frozenset[int] | None = None
    mistake: str = ""


@dataclass(frozen=True)
class Part:
    """Image/label pairs of one folder pair: scanned (``list_file`` None) or listed by a split file."""

    img_dir: str
    ann_dir: str
    img_suffix: str
    labels: tuple[LabelSource, ...]
    list_file: str | None = None


def subfolders(folder: Path) -> list[str]:
    """The names of the folders in `folder` (none when it does not exist), sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def describe_folder(root: Path) -> str:
    """What `root` holds, for an error message: its first entries (folders with a ``/``), or why there are none."""
    if not root.is_dir():
        return "nothing (no such folder)"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
    return listing(entries) if entries else "an empty folder"


def _scan(img_dir: Path, img_suffix: str) -> list[str]:
    """Relative image paths ending with `img_suffix` under `img_dir` (recursively, hidden files skipped), sorted."""
    rels = [
        p.relative_to(img_dir).as_posix()
        for p in img_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.relative_to(img_dir).as_posix().endswith(img_suffix)
    ]
    return sorted(rels, key=lambda rel: str(img_dir / rel))


def _names(list_file: Path) -> list[str]:
    """Non-blank, stripped lines of a split file, in file order."""
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"split list {str(list_file)!r} is not UTF-8 text ({e.reason} at byte {e.start}): it should hold one "
            "image name per line; is it the release's own file?"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def pair_part(root: Path, part: Part, where: str) -> tuple[list[tuple[Path, Path]], LabelSource]:
    """The (image, label) pairs of `part` under `root` and the label source every image has (the first such one of
    ``part.labels``); `where` starts each error message."""
    img_dir, ann_dir = root / part.img_dir, root / part.ann_dir
    if not img_dir.is_dir():
        raise FileNotFoundError(
            f"{where}: image folder {str(img_dir)!r} {absent(img_dir, 'a folder')}; {str(img_dir.parent)!r} holds "
            f"{describe_folder(img_dir.parent)}"
        )
    if part.list_file is not None:
        list_path = root / part.list_file
        if not list_path.is_file():
            raise FileNotFoundError(
                f"{where}: split list {str(list_path)!r} {absent(list_path, 'a file')}; {str(list_path.parent)!r} "
                "holds "
                f"{describe_folder(list_path.parent)}"
            )
        images = [(name + part.img_suffix) for name in _names(list_path)]
        if not images:
            raise ValueError(f"{where}: split list {str(list_path)!r} names no images")
        unlisted = [str(img_dir / rel) for rel in images if not (img_dir / rel).is_file()]
        if unlisted:
            raise FileNotFoundError(
                f"{where}: {len(unlisted)} of {len(images)} images named in {str(list_path)!r} do not exist: "
                f"{listing(unlisted)}"
            )
    else:
        images = _scan(img_dir, part.img_suffix)
        if not images:
            raise ValueError(
                f"{where}: no *{part.img_suffix} images under {str(img_dir)!r} (it holds {describe_folder(img_dir)})"
            )
    if not ann_dir.is_dir():
        raise FileNotFoundError(
            f"{where}: label folder {str(ann_dir)!r} {absent(ann_dir, 'a folder')}; {str(ann_dir.parent)!r} holds "
            f"{describe_folder(ann_dir.parent)}"
        )
    stems = [rel[: -len(part.img_suffix)] if part.list_file else rel for rel in images]
    missing: list[str] = []
    for source in part.labels:  # the first kind every image has wins, so one rule holds for the whole part
        if part.list_file:
            labels = [ann_dir / (stem + source.suffix) for stem in stems]
        else:
            labels = [ann_dir / rel.replace(part.img_suffix, source.suffix) for rel in images]
        missing = [str(p) for p in labels if not p.is_file()]
        if not missing:
            return [(img_dir / rel, label) for rel, label in zip(images, labels)], source
    suffixes = " or ".join(s.suffix for s in part.labels)
    raise FileNotFoundError(
        f"{where}: {len(missing)} of {len(stems)} images have no label (expected NAME{suffixes} under "
        f"{str(ann_dir)!r} for NAME{part.img_suffix} under {str(img_dir)!r}): {listing(missing)}"
    )
