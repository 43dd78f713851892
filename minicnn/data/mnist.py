"""MNIST and every dataset laid out like it (Fashion-MNIST, KMNIST).

An MNIST-style folder holds four IDX files (see :mod:`minicnn.data.idx`),
each raw or gzip-compressed (``.gz`` added to the name)::

    train-images-idx3-ubyte   uint8, shape (60000, 28, 28)
    train-labels-idx1-ubyte   uint8, shape (60000,), values 0-9
    t10k-images-idx3-ubyte    uint8, shape (10000, 28, 28)
    t10k-labels-idx1-ubyte    uint8, shape (10000,), values 0-9

and optionally a ``SHA256SUMS`` file (:mod:`minicnn.data.checksums`).

Where the files come from, in order:

1. ``load_mnist(root=folder)``;
2. the environment variable ``MINICNN_DATA`` (a folder);
3. the copy of MNIST bundled with minicnn (``minicnn/data/mnist/``), which
   is always checked against its ``SHA256SUMS``.

A folder of your own is checked when it has a ``SHA256SUMS``. Its digests may
be of the decompressed content (listed under the name without ``.gz``, as the
bundled one is) or of the ``.gz`` file itself (as ``sha256sum *.gz`` writes).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from minicnn.data.checksums import read_sha256sums
from minicnn.data.idx import DataError, read_idx

__all__ = ["BUNDLED_MNIST_DIR", "MNIST_FILES", "NUM_CLASSES", "load_mnist", "mnist_files"]

#: split -> (images file, labels file), names without ``.gz``.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
BUNDLED_MNIST_DIR = Path(__file__).resolve().parent / "mnist"
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)

# (split, folder) -> (file stamps, (images, labels)): verified arrays, reused
# while the files on disk are unchanged (same size and modification time).
_cache: dict[tuple[str, str], tuple[tuple, tuple[np.ndarray, np.ndarray]]] = {}


def load_mnist(split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of one split of an MNIST-style dataset.

    Returns ``(images, labels)``: ``images`` uint8 of shape (N, 28, 28) with
    0 the background and 255 full ink, ``labels`` int64 of shape (N,) in
    0-9. Both arrays are read-only because they are cached and shared by
    every caller (``images.copy()`` gives one you may edit).

    ``split`` is ``"train"`` or ``"test"``; ``root`` a folder of IDX files
    (see the module docstring for where files come from when it is None).
    Raises :class:`DataError` when a file is corrupt or inconsistent and
    ``FileNotFoundError`` when the folder or a file is missing.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown split {split!r}; the valid splits are "
                         f"{', '.join(repr(s) for s in MNIST_FILES)}")
    folder, origin = _folder(root)
    image_path, label_path = (_find(folder, name, origin) for name in MNIST_FILES[split])
    sums_path = folder / "SHA256SUMS"
    stamp = tuple(_stamp(p) for p in (image_path, label_path, sums_path))
    cached = _cache.get((split, str(folder)))
    if cached is not None and cached[0] == stamp:
        return cached[1]

    if sums_path.exists():
        sums = read_sha256sums(sums_path)
    elif folder == BUNDLED_MNIST_DIR:
        raise DataError(f"the bundled {sums_path} is missing; reinstall minicnn")
    else:
        sums = None
    images = _read_checked(image_path, sums)
    labels = _read_checked(label_path, sums)
    _validate(images, labels, image_path, label_path)

    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    _cache[(split, str(folder))] = (stamp, (images, labels))
    return images, labels


def mnist_files(root=None) -> tuple[Path, str, dict[str, Path]]:
    """Where ``load_mnist(root=root)`` reads: the folder, where that choice came from (``--data-dir`` on the
    command line, ``MINICNN_DATA``, the bundled copy), and each of its four files (raw or ``.gz``) by its
    name without ``.gz``.  ``FileNotFoundError`` naming what is missing, as :func:`load_mnist`."""
    folder, origin = _folder(root)
    return folder, origin, {name: _find(folder, name, origin) for pair in MNIST_FILES.values() for name in pair}


def _folder(root) -> tuple[Path, str]:
    """The folder to read, and where that choice came from (for error messages)."""
    if root is not None:
        folder, origin = Path(root).expanduser(), "root, --data-dir on the command line"
    elif os.environ.get("MINICNN_DATA", "").strip():
        folder, origin = Path(os.environ["MINICNN_DATA"].strip()).expanduser(), "MINICNN_DATA"
    else:
        return BUNDLED_MNIST_DIR, "the bundled copy"
    if not folder.is_dir():
        raise FileNotFoundError(f"the MNIST data folder {folder} (from {origin}) is not a directory")
    return folder.resolve(), origin


def _find(folder: Path, name: str, origin: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} not found: expected {folder / name} or {folder / name}.gz "
                            f"(folder from {origin})")


def _stamp(path: Path):
    if not path.exists():
        return None
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def _read_checked(path: Path, sums: dict[str, str] | None) -> np.ndarray:
    """Read one IDX file, verifying it against ``sums`` when there are any."""
    if sums is None:
        return read_idx(path)
    content_name = path.name.removesuffix(".gz")
    if content_name in sums:  # digest of the decompressed content
        return read_idx(path, sha256=sums[content_name])
    if path.name in sums:  # digest of the .gz file exactly as stored
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != sums[path.name]:
            raise DataError(f"{path}: SHA-256 mismatch: expected {sums[path.name]} "
                            f"(from SHA256SUMS), found {found}")
        return read_idx(path)
    raise DataError(f"{path.parent / 'SHA256SUMS'} lists no digest for {path.name}: "
                    f"expected a line for {content_name!r} or {path.name!r}")


def _validate(images, labels, image_path: Path, label_path: Path) -> None:
    for array, path, ndim, what in ((images, image_path, 3, "(N, 28, 28)"),
                                    (labels, label_path, 1, "(N,)")):
        if array.dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 elements (IDX type 0x08), found {array.dtype}")
        if array.ndim != ndim:
            raise DataError(f"{path}: expected shape {what}, found {array.shape}")
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{image_path}: expected images of 28x28 pixels, shape (N, 28, 28); "
                        f"found {images.shape}")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images in {image_path} but {len(labels)} labels in "
                        f"{label_path}; expected one label per image")
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DataError(f"{label_path}: label {labels[bad[0]]} at index {bad[0]} is outside 0-9 "
                        f"({bad.size} labels out of range in all)")
