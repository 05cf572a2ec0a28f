"""Download a URL to a file: streamed with a progress bar, checked against a sha256 prefix, and atomic.

The bytes go to a temporary file next to the destination and are renamed into place only after the length and the
checksum are verified, so an interrupted, truncated or corrupted transfer never leaves a file a later run would trust.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from huggingface_hub.utils import tqdm

from ..atomic import atomic_path
from ..version import __version__

CHUNK_SIZE = 1 << 20


class DownloadError(OSError):
    """A download failed or produced a file that is not the expected one; nothing was left behind."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256 prefix."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(
    url: str,
    dest: str | Path,
    *,
    sha256_prefix: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest` and return `dest`.

    Args:
        url: an ``http(s)://`` URL.
        dest: the final file path; its folder is created.
        sha256_prefix: leading hex digits the file's SHA-256 must have (mmseg names files ``*-<sha256[:8]>.pth``).
        progress: show a progress bar on stderr (also silenced by ``HF_HUB_DISABLE_PROGRESS_BARS=1``).
        timeout: seconds to wait for the connection and for each read.

    Raises:
        DownloadError: HTTP error, connection failure, timeout or a transfer shorter than announced.
        ChecksumError: the bytes do not match `sha256_prefix`.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with open(tmp, "xb") as out:
            actual = _stream(url, out, progress=progress, timeout=timeout, name=dest.name)
            out.flush()
            os.fsync(out.fileno())
        if sha256_prefix and not actual.startswith(sha256_prefix.lower()):
            raise ChecksumError(
                f"sha256 of the file downloaded from {url} is {actual[:16]}..., expected it to start with "
                f"{sha256_prefix!r}: the download is corrupted or the file was replaced upstream"
            )
    return dest


def _stream(url: str, out: BinaryIO, *, progress: bool, timeout: float, name: str) -> str:
    """Copy the response body of `url` into `out` and return its hex sha256; the length must match Content-Length."""
    request = urllib.request.Request(url, headers={"User-Agent": f"deeplabv3p/{__version__}"})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress
            ) as bar:
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url} answered HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"could not reach {url}: {e.reason}") from e
    except (http.client.HTTPException, TimeoutError, ConnectionError) as e:
        raise DownloadError(f"transfer from {url} broke off after {received} bytes: {e!r}") from e
    if total is not None and received != total:
        raise DownloadError(f"transfer from {url} was truncated: got {received} of {total} bytes")
    return digest.hexdigest()
