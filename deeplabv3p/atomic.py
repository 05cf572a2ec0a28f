"""Files and folders written all or nothing: to a temporary name beside the target, renamed over it once complete.

Temporary names are ``.NAME.<pid>-<hex>.incomplete``: hidden, recognisable as ours, and tagged with the process
writing them, so that a later write can remove those a killed process left behind (`remove_stale`) without ever
touching one that a live process is still writing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".incomplete"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{8,32}\.(?P<kind>incomplete|old)$")
_RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15): swap two paths in one step
_AT_FDCWD = -100


def temporary_name(path: str | Path) -> Path:
    """A fresh ``.NAME.<pid>-<hex>.incomplete`` path beside `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


def is_temporary(name: str, of: Iterable[str] | None = None) -> bool:
    """Whether a file name is one of `temporary_name`'s (or a folder set aside by `replace_folder`), for one of
    the names `of` when given."""
    match = _TEMP_NAME.match(name)
    return match is not None and (of is None or match["name"] in set(of))


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Remove temporaries in `folder` left by killed writers of `names` (any name when None); returns them.

    A temporary is stale when the process that wrote it no longer runs (or its name carries no process id, as
    older versions wrote them). Files and staging folders are both removed; an old folder set aside by
    `replace_folder` (``.NAME.<pid>-<hex>.old``) only once NAME exists again, since it may be the only copy.
    """
    folder = Path(folder)
    wanted = None if names is None else set(names)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or (wanted is not None and match["name"] not in wanted):
            continue
        if match["pid"] is not None and _writer_alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not (folder / match["name"]).exists():
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def usual_file_mode() -> int:
    """``0o666`` less the process umask: the permissions ``open()`` gives a new file."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it (and put it back at once)
    os.umask(mask)
    return 0o666 & ~mask


def _naming(error: OSError, path: Path) -> OSError:
    """`error` reported against `path` (the target) rather than a temporary name or no name at all."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), str(path))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; renamed to `path` when the block succeeds, removed if not.

    Whatever the writer did, the file ends up with the usual permissions (``0o666`` less the umask), as if ``open()``
    had created it. An OSError raised in the block (permission denied, disk full) names `path`, not the temporary.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, usual_file_mode())
        os.replace(tmp, path)
    except OSError as e:
        raise _naming(e, path) from e
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically: flushed to disk, and its size on disk checked, before the rename.

    The check catches writers that lose the end of a file without an error (a short write at a full disk or a file
    size limit, which some encoders ignore): a file that is not all there is never published.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        written = os.fstat(f.fileno()).st_size
        if written != len(data):
            raise OSError(errno.EIO, f"only {written} of {len(data)} bytes reached the disk (is it full?)", str(path))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the file system cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))


def _cwd_inside(folder: Path) -> str | None:
    """The working directory when it is `folder` or inside it (a swap would leave the process in a deleted one)."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        return None
    resolved = folder.resolve()
    return cwd if Path(cwd) == resolved or resolved in Path(cwd).parents else None


def replace_folder(new: str | Path, final: str | Path) -> None:
    """Put the complete folder `new` at `final`, which is never seen half-written; an existing `final` is removed.

    Where the OS can (Linux), the two are exchanged in one step, so `final` always holds the old or the new folder.
    Elsewhere the old folder is first renamed aside; a crash between the two renames leaves it there as
    ``.FINAL.<pid>-<hex>.old``. A working directory inside `final` is moved into the new folder.
    """
    new, final = Path(new), Path(final)
    if not final.exists():
        os.rename(new, final)
        return
    cwd = _cwd_inside(final)
    if _exchange(new, final):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
    else:
        old = temporary_name(final).with_suffix(".old")
        os.rename(final, old)
        try:
            os.rename(new, final)
        except OSError:
            os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    if cwd is not None:
        os.chdir(cwd if os.path.isdir(cwd) else final)


def _new_staging(path: Path) -> Path:
    """A new empty hidden folder beside `path` (`temporary_name`); an OSError names `path`, not the folder."""
    staging = temporary_name(path)
    try:
        os.mkdir(staging)
    except OSError as e:
        raise _naming(e, path) from e
    return staging


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A new empty folder beside `path` to fill; when the block succeeds it takes `path`'s place (`replace_folder`).

    If the block fails, the partial folder is removed and `path` is untouched. An OSError (no permission, disk
    full) names `path` or the file inside it, never the staging folder.
    """
    path = Path(path)
    staging = _new_staging(path)
    try:
        yield staging
        replace_folder(staging, path)
    except OSError as e:
        # name the file of `path` the error is about, not its staging copy
        name = os.fsdecode(e.filename) if isinstance(e.filename, str | bytes) else ""
        inside = Path(name).relative_to(staging) if name.startswith(str(staging)) else None
        raise _naming(e, path / inside if inside is not None else path) from e
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_files(path: str | Path) -> Iterator[Path]:
    """A new empty staging folder beside `path` for a file (or folder) named ``path.name`` and its sibling files
    (an OpenVINO ``.xml`` and its ``.bin``, an export and its ``.json`` metadata).

    When the block succeeds, every entry is moved into `path`'s folder, the siblings first and ``path.name`` last:
    the entry readers open appears only once everything it refers to is in place. If the block fails, nothing is
    moved and the staging folder is removed. Staging folders for ``path.name`` left by killed writers are removed
    first (`remove_stale`).
    """
    path = Path(path)
    remove_stale(path.parent, [path.name])
    staging = _new_staging(path)
    try:
        yield staging
        entries = sorted(staging.iterdir(), key=lambda p: p.name == path.name)
        for entry in entries:
            target = path.parent / entry.name
            if entry.is_dir():
                replace_folder(entry, target)
            else:
                os.chmod(entry, usual_file_mode())
                os.replace(entry, target)
    except OSError as e:
        raise _naming(e, path) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
