"""Downloading dataset files from a list of mirrors, safely.

minicnn ships MNIST, so nothing here is needed to train on it. This module is
for other MNIST-style datasets (Fashion-MNIST, KMNIST) or a fresh copy of
MNIST, and shows the three habits that make a download trustworthy:

1. **Mirrors in order.** Each file is fetched from the first mirror that
   serves it correctly; a mirror that is down, refuses, or serves wrong bytes
   is skipped and the next one tried.
2. **Checksums.** A file with a known SHA-256 (of its content, decompressed
   if gzip: see :mod:`minicnn.data.checksums`) is kept only if it matches.
3. **Atomic writes.** Bytes go to a temporary file in the destination folder
   and are renamed into place (``os.replace``) only once complete and
   verified. A failed or interrupted download leaves no half-written file
   under the real name, and the temporary file is removed.

Only the standard library (``urllib``) is used.
"""
from __future__ import annotations

import http.client
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Mapping

from minicnn.data.checksums import content_sha256, read_sha256sums
from minicnn.data.idx import DataError
from minicnn.data.mnist import BUNDLED_MNIST_DIR, MNIST_FILES
from minicnn.serialization import write_atomic

__all__ = ["DownloadError", "MNIST_MIRRORS", "download", "download_mnist"]

#: Folders that serve the four canonical MNIST ``.gz`` files.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class DownloadError(OSError):
    """No mirror could deliver a file (offline, missing, or wrong content)."""


def download(mirrors: str | Iterable[str], dest_dir, files: Iterable[str],
             sha256: Mapping[str, str] | None = None, timeout: float = 30.0) -> list[Path]:
    """Fetch each of ``files`` into ``dest_dir`` from the first mirror that has it.

    ``mirrors``: a base URL or a sequence of them, tried in order; a file's URL
    is the base URL, a ``/``, and the file name. ``sha256``: optional
    ``{file name: hex digest of its content}``; a file without an entry is
    accepted as served. A file already in ``dest_dir`` is kept when it has no
    digest or matches it (so calling again costs nothing), and fetched again
    otherwise. ``timeout`` is in seconds, per connection attempt.

    Returns the paths of the files, in the order of ``files``. Raises
    :class:`DownloadError` naming every mirror tried and what went wrong.
    """
    mirrors = [mirrors] if isinstance(mirrors, str) else list(mirrors)
    files = list(files)
    sha256 = {name: digest.lower() for name, digest in (sha256 or {}).items()}
    if not mirrors:
        raise ValueError("download needs at least one mirror URL")
    unknown = sorted(set(sha256) - set(files))
    if unknown:
        raise ValueError(f"sha256 has digests for {unknown}, which are not among the files {files}")
    for name in files:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"file names must be plain names without folders, got {name!r}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)

    paths = []
    for name in files:
        target, expected = dest_dir / name, sha256.get(name)
        if not (target.is_file() and (expected is None or _matches(target, expected))):
            _fetch_from_mirrors(mirrors, name, target, expected, timeout)
        paths.append(target)
    return paths


def download_mnist(dest_dir, mirrors: str | Iterable[str] = MNIST_MIRRORS,
                   timeout: float = 30.0) -> list[Path]:
    """Download the four MNIST ``.gz`` files into ``dest_dir``, verified.

    The digests are those of the bundled copy, so what arrives is exactly
    MNIST; afterwards ``load_mnist(root=dest_dir)`` reads it.
    """
    sums = read_sha256sums(BUNDLED_MNIST_DIR / "SHA256SUMS")
    names = [name for pair in MNIST_FILES.values() for name in pair]
    return download(mirrors, dest_dir, [f"{n}.gz" for n in names],
                    sha256={f"{n}.gz": sums[n] for n in names}, timeout=timeout)


def _matches(path: Path, expected: str) -> bool:
    try:
        return content_sha256(path) == expected
    except DataError:  # e.g. a corrupt gzip file: not a match, fetch it again
        return False


def _fetch_from_mirrors(mirrors, name, target: Path, expected, timeout) -> None:
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            _fetch(url, target, expected, timeout)
            return
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # URLError and HTTPError are OSErrors, DataError is a ValueError.
            failures.append((url, exc))
    # Connection failures (not an HTTP error answer, not bad bytes) everywhere suggest no network.
    unreachable = all(isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError))
                      and not isinstance(exc, urllib.error.HTTPError) for _, exc in failures)
    raise DownloadError(f"could not download {name} from any of {len(mirrors)} mirror(s)"
                        + (" (no mirror could be reached: are you offline?)" if unreachable else "")
                        + "; tried:\n" + "\n".join(f"  {url}: {exc}" for url, exc in failures))


def _fetch(url: str, target: Path, expected: str | None, timeout: float) -> None:
    """Download ``url`` to ``target`` through a temporary file; verify, then rename."""
    request = urllib.request.Request(url, headers={"User-Agent": "minicnn"})

    def download(out):
        with urllib.request.urlopen(request, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
            announced = response.headers.get("Content-Length")
            if announced is not None and out.tell() != int(announced):
                raise DataError(f"truncated: the server announced {announced} bytes, "
                                f"{out.tell()} arrived")

    def verify(tmp):
        if expected is not None:
            found = content_sha256(tmp)
            if found != expected:
                raise DataError(f"SHA-256 mismatch of the content: expected {expected}, found {found}")

    write_atomic(target, download, check=verify)
