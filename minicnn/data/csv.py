"""MNIST as CSV, in the layout of Kaggle's "Digit Recognizer" competition.

``train.csv`` has a header and then one image a line, its label first::

    label,pixel0,pixel1,...,pixel783
    1,0,0,...,0

``pixelK`` is the pixel in row ``K // 28``, column ``K % 28``, 0-255.
``test.csv`` is the same without the ``label`` column.

The file must be plain UTF-8 text; a byte-order mark at the start (as Excel
writes) is skipped, and a ZIP or gzip file is refused with a hint to unpack it.

Reading is done twice only when something is wrong: NumPy's fast parser
reads a good file in one pass; if it fails, or a value is out of range, a
slow line-by-line pass finds the first bad line and says what is wrong with it.
"""
from __future__ import annotations

import re
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np

from minicnn.data.idx import GZIP_MAGIC, DataError

__all__ = ["load_mnist_csv"]

NUM_PIXELS = 28 * 28
PIXEL_COLUMNS = [f"pixel{k}" for k in range(NUM_PIXELS)]
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
ZIP_MAGIC = b"PK\x03\x04"


def load_mnist_csv(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle-layout MNIST CSV file.

    Returns ``(images, labels)``: uint8 images of shape (N, 28, 28) and int64
    labels of shape (N,), or ``None`` for the labels of a file without a
    ``label`` column. Raises :class:`DataError` naming the 1-based line and the
    problem for a wrong header, a wrong number of values, a value that is not
    an integer, or one out of range (pixels 0-255, labels 0-9), and naming the
    file for one that is not plain UTF-8 text (a ZIP or gzip file, another encoding).
    """
    path = Path(path)
    with closing(_lines(path)) as lines:
        _, first = next(lines, (1, ""))  # an empty file has one empty line
    header = [name.strip().strip('"') for name in first.split(",")]
    columns = _check_header(header, path)
    has_labels = columns[0] == "label"

    table = _fast_parse(path)
    if table is None or table.shape[1] != len(columns) or not _in_range(table, has_labels):
        _diagnose(path, columns)  # raises, naming the first bad line
        raise DataError(f"{path}: could not be read as a {len(columns)}-column integer CSV")

    labels = table[:, 0].astype(np.int64) if has_labels else None
    images = table[:, 1:] if has_labels else table
    return images.astype(np.uint8).reshape(-1, 28, 28), labels


def _check_header(header: list[str], path: Path) -> list[str]:
    """The expected column names, if ``header`` is one of the two layouts."""
    columns = (["label"] + PIXEL_COLUMNS) if header[:1] == ["label"] else PIXEL_COLUMNS
    layout = "label,pixel0,...,pixel783" if columns[0] == "label" else "pixel0,...,pixel783"
    if len(header) != len(columns):
        raise DataError(f"{path}, line 1: expected the header {layout} ({len(columns)} columns), "
                        f"found {len(header)} columns starting {','.join(header[:3])!r}")
    for k, (found, expected) in enumerate(zip(header, columns), start=1):
        if found != expected:
            raise DataError(f"{path}, line 1: expected column {k} of the header to be {expected!r} "
                            f"(header {layout}), found {found!r}")
    return columns


def _fast_parse(path: Path):
    """All data rows as an int64 table, or None if NumPy's parser refuses the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "input contained no data" becomes an error
            # comments=None: "0#junk" is a bad value, not 0 and a comment.
            return np.loadtxt(path, delimiter=",", dtype=np.int64, skiprows=1, ndmin=2,
                              encoding="utf-8-sig", comments=None)
    except (ValueError, UserWarning):
        return None


def _in_range(table: np.ndarray, has_labels: bool) -> bool:
    pixels = table[:, 1:] if has_labels else table
    ok = len(table) > 0 and pixels.min() >= 0 and pixels.max() <= 255
    if has_labels and ok:
        ok = table[:, 0].min() >= 0 and table[:, 0].max() <= 9
    return bool(ok)


def _lines(path: Path):
    """(1-based number, text without the line break) of each line of the UTF-8 file ``path``.

    A byte-order mark before the first line is skipped. A ZIP or gzip file,
    or bytes that are not UTF-8, raise a DataError.
    """
    with path.open("rb") as f:
        start = f.read(4)
    if start.startswith(ZIP_MAGIC):
        raise DataError(f"{path}: expected a plain-text CSV file, found a ZIP archive; "
                        f"unzip it and pass the .csv file inside")
    if start.startswith(GZIP_MAGIC):
        raise DataError(f"{path}: expected a plain-text CSV file, found a gzip-compressed file; "
                        f"decompress it first (gunzip)")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for number, line in enumerate(f, start=1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: expected a plain-text CSV file in UTF-8, found bytes that are not "
                        f"UTF-8 ({exc.reason}); save it as UTF-8 CSV") from None


def _diagnose(path: Path, columns: list[str]) -> None:
    """Read line by line and raise a DataError for the first bad line."""
    rows = 0
    with closing(_lines(path)) as lines:
        next(lines)  # the header, already checked
        for number, line in lines:
            if not line.strip():
                continue
            rows += 1
            values = line.split(",")
            if len(values) != len(columns):
                raise DataError(f"{path}, line {number}: expected {len(columns)} comma-separated "
                                f"values (one per header column), found {len(values)}")
            for name, text in zip(columns, values):
                if not _INTEGER.fullmatch(text):
                    raise DataError(f"{path}, line {number}: column {name} is {text!r}; "
                                    f"expected an integer")
                value, high = int(text), (9 if name == "label" else 255)
                if not 0 <= value <= high:
                    what = "a label" if name == "label" else "a pixel value"
                    raise DataError(f"{path}, line {number}: column {name} is {value}; "
                                    f"expected {what} in 0-{high}")
    if rows == 0:
        raise DataError(f"{path}: no data rows after the header; expected at least one image")
