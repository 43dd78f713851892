"""Reading IDX files, the format MNIST (and Fashion-MNIST, KMNIST) ships in.

An IDX file is a tiny header followed by the raw array, all big-endian::

    offset  size     what
    0       2        two zero bytes
    2       1        type code of the elements (table below)
    3       1        number of dimensions, ndim
    4       4*ndim   the size of each dimension, as big-endian uint32
    4+4*ndim ...     the elements, in C order (last index fastest)

so bytes 0-3 are the *magic number* ``0x0000 TT DD``. The MNIST training
images start ``00 00 08 03`` (uint8, 3 dimensions) then 60000, 28, 28; the
labels start ``00 00 08 01`` then 60000. The payload must be exactly
``prod(dims) * itemsize`` bytes: fewer means the file was cut short, more
means it is not what its header says.

    type code  element
    0x08       unsigned byte (uint8)  <- every MNIST-style file
    0x09       signed byte (int8)
    0x0B       short (int16)
    0x0C       int (int32)
    0x0D       float (float32)
    0x0E       double (float64)

The files are usually gzip-compressed (``.gz``). :func:`read_idx` does not
trust the file name: it looks at the first two bytes, ``1f 8b`` being the
gzip magic, and decompresses only then.  It reads (and decompresses) as it
checks: the header first, then no more than the bytes its dimensions
promise and one more, so a file longer than its header says, such as a
small gzip bomb that inflates to gigabytes, stops at the first byte too many.

Docs: docs/data.md#idx-files
"""
from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "IDX_TYPES", "parse_idx", "read_content", "read_idx"]

#: IDX type code -> big-endian NumPy dtype of the elements.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A data file is corrupt, truncated, or not what it should be."""


def read_content(path) -> bytes:
    """The bytes of ``path``, decompressed when it starts with the gzip magic."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise _gzip_error(path, exc) from None


def _header(data: bytes, name: str) -> tuple[tuple, np.dtype, int, int]:
    """``(dims, dtype, header_size, data_bytes)`` from the header at the start of ``data`` (which may
    hold more); :class:`DataError` when the header is malformed or cut short."""
    if len(data) < 4:
        raise DataError(f"{name}: expected an IDX header of at least 4 bytes, found {len(data)} bytes")
    zeros, type_code, ndim = data[0:2], data[2], data[3]
    if zeros != b"\x00\x00":
        raise DataError(f"{name}: not an IDX file: the magic number must start with two zero bytes "
                        f"(00 00), found {zeros.hex(' ')}")
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_TYPES.items())
        raise DataError(f"{name}: unknown IDX type code 0x{type_code:02X}; expected one of {known}")
    if ndim == 0:
        raise DataError(f"{name}: IDX header says 0 dimensions; expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{name}: truncated header: {ndim} dimensions need {header_size} header bytes, "
                        f"found {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    # Python ints, not np.prod: a corrupt header's sizes can multiply past int64.
    return dims, dtype, header_size, math.prod(dims) * dtype.itemsize


def _size_error(name: str, dims: tuple, dtype: np.dtype, header_size: int, expected: int, found: int,
                more: bool = False) -> DataError:
    problem = "truncated" if found < expected else "too long"
    return DataError(f"{name}: {problem}: the header promises shape {dims} of {dtype.name}, i.e. "
                     f"{expected} data bytes after the {header_size}-byte header, found {found}"
                     + (" or more (read no further)" if more else ""))


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array held by the IDX bytes ``data`` (``name`` is used in errors).

    Returns a new, writable array in native byte order.
    """
    dims, dtype, header_size, expected = _header(data, name)
    found = len(data) - header_size
    if found != expected:
        raise _size_error(name, dims, dtype, header_size, expected, found)
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a copy: writable, native byte order


_CHUNK = 1 << 20


def _gzip_error(path, exc) -> DataError:
    return DataError(f"{path}: starts like a gzip file (1f 8b) but cannot be decompressed, "
                     f"so it is corrupt or cut short ({exc})")


def _read_bounded(path: Path) -> bytes:
    """The content of ``path`` (decompressed when it starts with the gzip magic), read only as far as
    the IDX header at its start allows: the header, then at most the data bytes it promises; one byte
    more is an error at once, before anything further is read or inflated."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw

        def read(n: int) -> bytes:
            try:
                return stream.read(n)
            except (OSError, EOFError, zlib.error) as exc:
                if not gz:
                    raise
                raise _gzip_error(path, exc) from None

        head = read(4)
        if len(head) == 4 and head[:2] == b"\x00\x00":
            head += read(4 * head[3])
        dims, dtype, header_size, expected = _header(head, str(path))
        parts, found = [head[header_size:]], len(head) - header_size
        while found <= expected:
            chunk = read(min(_CHUNK, expected + 1 - found))
            if not chunk:
                break
            parts.append(chunk)
            found += len(chunk)
        if found != expected:
            raise _size_error(str(path), dims, dtype, header_size, expected, found, more=found > expected)
    return head[:header_size] + b"".join(parts)


def read_idx(path, sha256: str | None = None) -> np.ndarray:
    """Read the IDX file ``path`` (gzip-compressed or raw) into a NumPy array.

    ``sha256``: when given, the hex SHA-256 that the *decompressed* content
    must have; a mismatch raises :class:`DataError` before the array is made.  The
    content is read no further than its header allows (a file longer than that
    is refused at its first byte too many, before its digest is taken).
    """
    path = Path(path)
    data = _read_bounded(path)
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != sha256.lower():
            raise DataError(f"{path}: SHA-256 mismatch of the decompressed content: "
                            f"expected {sha256.lower()}, found {found}")
    return parse_idx(data, str(path))
