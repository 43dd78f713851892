"""SHA-256 digests of data files, and the ``SHA256SUMS`` files that list them.

Every digest in minicnn is of a file's *content*: the bytes after gzip
decompression when the file is gzip-compressed. Two ``.gz`` files can differ
byte for byte (a timestamp in the gzip header, another compression level) and
still hold exactly the same dataset; the content digest sees only the dataset.

A ``SHA256SUMS`` file is what ``sha256sum`` prints, one file a line::

    ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte

(``sha256sum --binary`` puts ``*`` before the name; blank lines and lines
starting with ``#`` are skipped).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from minicnn.data.idx import DataError, read_content

__all__ = ["content_sha256", "read_sha256sums"]

_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def content_sha256(path) -> str:
    """Hex SHA-256 of the content of ``path`` (decompressed if it is gzip)."""
    return hashlib.sha256(read_content(path)).hexdigest()


def read_sha256sums(path) -> dict[str, str]:
    """``{file name: lower-case hex digest}`` from a ``SHA256SUMS`` file."""
    path = Path(path)
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.match(line.rstrip())
        if match is None:
            raise DataError(f"{path}, line {number}: expected '<64 hex digits>  <file name>', "
                            f"found {line[:100]!r}")
        sums[match.group(2)] = match.group(1).lower()
    return sums
