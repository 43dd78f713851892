"""Saving and loading weights and training checkpoints as ``.npz`` files.

Weights (:func:`save` / :func:`load`): one array per ``state_dict`` entry,
under the same dotted names PyTorch uses (``conv1.weight``, ...), so
``numpy.load`` shows exactly what a model holds.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`): nested state
(model, optimizer, scheduler, epoch, history, random-generator states) is
flattened into arrays named by their path, plus one JSON document for
everything that is not an array; in it, ``{"__array__": name}`` stands for
the array stored under ``name``.  Files are read with ``allow_pickle=False``:
loading a file never runs code.  Only the arrays a model (and the checkpoint's
JSON part) expect are read, and each only after the shape and dtype in its
header have been checked against the model, and the size the archive declares
for it against those: a crafted file (a huge declared shape, a deflate bomb
under an extra name, weights stored as integers) is refused before any
memory is spent on it.  Paths may start with ``~``.

Every write goes to a temporary file in the destination folder and is then
renamed over the target, so a crash leaves the old file or the new one,
never half of one. The same writer (:func:`write_atomic`) writes the package's other files:
text and JSON reports (:func:`write_text_atomic`, :func:`write_json_atomic`) and figures
(:func:`minicnn.plots.save_figure`).  No write follows a link or replaces a special file: a
destination that is a symbolic link (the rename would replace the link, not the file it points
to), a device, a FIFO or a socket is refused with :class:`UnsafePathError`
(:func:`check_destination`), before anything is written.  The folders above it may be links.
"""
from __future__ import annotations

import csv
import io
import json
import math
import errno
import os
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from minicnn.backend import to_numpy
from minicnn.nn.module import Module
from minicnn.nn.state import StateDictError

_META = "__meta__"
_ARRAY = "__array__"


class CheckpointError(ValueError):
    """A weights or checkpoint file is missing, unreadable or does not fit."""


class UnsafePathError(OSError):
    """A path that minicnn would write through a symbolic link, or a special file (a device, a FIFO, a
    socket) it would replace with a regular file: refused.  ``filename`` is the path, ``strerror`` says
    what it is and what to do ("is a symbolic link to ...; ..."); printed, "PATH: is a symbolic link ..."."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}" if self.filename is not None else super().__str__()


_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO (named pipe)"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link"))


def file_kind(mode: int) -> str:
    """What an ``st_mode`` is, in words: ``"regular file"``, ``"character device"``, ``"FIFO (named pipe)"``..."""
    return next((kind for test, kind in _KINDS if test(mode)), "regular file" if stat.S_ISREG(mode) else "special file")


def check_destination(path) -> None:
    """Raise :class:`UnsafePathError` when ``path`` is a symbolic link (dangling or not) or exists and is
    neither a regular file nor a folder; else nothing (a folder is left to the write to report).

    Every atomic write checks its destination so: a rename over a link replaces the link, not the
    file it points to, and a rename over a device or a FIFO puts a regular file in its place.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # no such file (or a folder above it is missing or not a folder): the write reports it
    if stat.S_ISLNK(mode):
        try:
            target = f" to {os.readlink(path)}"
        except OSError:
            target = ""
        raise UnsafePathError(errno.ELOOP, f"is a symbolic link{target}; minicnn writes no file through a link "
                                           f"(its rename would replace the link itself): name the file itself, "
                                           f"or remove the link", str(path))
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsafePathError(errno.EEXIST, f"is a {file_kind(mode)}, not a regular file; minicnn does not "
                                            f"replace it with one: remove it or name another file", str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write, check=None) -> Path:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the new one, never half of one; when ``write``
    fails, the old file stays and the temporary file is removed.  ``check``, if
    given, is called with the temporary file's path once it is complete and
    on disk, before the rename; when it raises, the same happens as when
    ``write`` fails (a download verifies its checksum this way).  The new file
    gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    An ``OSError`` that names no file (a full disk) or the temporary file is given ``path`` as its
    file name.  A ``path`` that is a symbolic link or a special file is refused
    (:func:`check_destination`), before anything is written.
    """
    path = Path(path)
    check_destination(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.strerror is not None and exc.filename in (None, tmp):
            # A full disk fails a write with no file name: name the file being written.
            exc.filename = str(path)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a reader sees the old file or the new one."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_csv_atomic(path, rows, columns) -> Path:
    """Write ``rows`` (dicts) as CSV with a header of ``columns`` (other keys left out), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as indented JSON, with a final newline, to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def _file_path(path) -> Path:
    """``path`` with ``~`` expanded; :class:`CheckpointError` if it is a directory or lies inside a file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a file path such as {path / 'model.npz'}")
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise CheckpointError(f"{path}: {parent} is a file, not a directory")
    return path


def _write_npz_atomic(path, arrays: dict) -> Path:
    return write_atomic(_file_path(path), lambda f: np.savez(f, **arrays))


def _open_npz(path: Path) -> zipfile.ZipFile:
    """The .npz file at ``path`` (a path from :func:`_file_path`) opened as the zip archive it is; no array is read."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"no such weights file: {path}") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied: this user may not open the folder it is in") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path} is a {file_kind(mode)}, not a weights file (expected a .npz file as "
                              f"written by minicnn.save or save_checkpoint)")
    try:
        open(path, "rb").close()  # zipfile.is_zipfile answers False for a file it may not read
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied: this user may not read the file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # np.load would try any other file as a pickle and answer with advice to
    # load it unsafely; a .npz file is a zip archive, so check for one first.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a .npz file: expected a zip archive of arrays as written by "
                              f"minicnn.save or save_checkpoint (the file may be of another kind, or truncated)")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable .npz file ({exc})") from None


def _members(archive: zipfile.ZipFile) -> dict:
    """``{name: ZipInfo}`` of the arrays in an .npz archive (member ``name.npy``), from its index alone."""
    return {info.filename[:-len(".npy")]: info for info in archive.infolist() if info.filename.endswith(".npy")}


def stored_names(path) -> list[str]:
    """The names of the arrays in the .npz file at ``path``, read from the archive's index (no array is read)."""
    path = _file_path(path)
    with _open_npz(path) as archive:
        return list(_members(archive))


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError)


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str) -> tuple:
    """``(shape, dtype, nbytes, header_bytes)``: what the member ``key`` declares in its .npy header
    (``nbytes = prod(shape) * dtype.itemsize``) and the header's length, read from the header only."""
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            header_bytes = f.tell()
    except _READ_ERRORS as exc:
        raise CheckpointError(f"{path} is not a readable .npz file ({key}: {exc})") from None
    if dtype.hasobject:
        raise CheckpointError(f"{path} is not a readable .npz file ({key} is an array of Python objects, which "
                              f"only pickle could read; minicnn reads with allow_pickle=False)")
    return shape, dtype, math.prod(shape) * dtype.itemsize, header_bytes


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str) -> np.ndarray:
    """The array ``key``, whose declared shape and dtype the caller has compared with what it expects.

    It is read only when the archive's index says that the member inflates to exactly its header and the
    declared bytes (reading stops at the index's size, so no more than that is ever inflated).
    """
    shape, dtype, nbytes, header_bytes = _header(archive, info, path, key)
    stored = info.file_size - header_bytes
    if stored != nbytes:
        raise CheckpointError(f"{path} is not a readable .npz file ({key} declares shape {shape} of {dtype}, "
                              f"{nbytes:,} bytes, but the archive holds {stored:,} bytes of it)")
    try:
        with archive.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise CheckpointError(f"{path} is not a readable .npz file ({key}: {exc})") from None


def _model_arrays(model: Module, archive: zipfile.ZipFile, members: dict, prefix: str, path: Path) -> dict:
    """The arrays under ``prefix`` (``"model/"`` in a checkpoint) for ``model.load_state_dict``.

    Only the keys the model has are read, and only once their headers declare the model's shapes and,
    for a floating entry, a floating dtype (weights stored as integers hold nothing a network can use).
    Other keys map to None: ``load_state_dict`` names them as unexpected without reading them.
    """
    stored = {k[len(prefix):]: info for k, info in members.items() if k.startswith(prefix) and k != _META}
    expected = model.state_dict()
    problems = []
    for key in (k for k in expected if k in stored):
        shape, dtype, _, _ = _header(archive, stored[key], path, prefix + key)
        want = expected[key]
        if shape != tuple(want.shape):
            problems.append(f"{key}: expected shape {tuple(want.shape)}, got {shape}")
        elif np.dtype(want.dtype).kind == "f" and dtype.kind != "f":
            problems.append(f"{key}: expected a floating-point array for a {want.dtype} entry, got dtype {dtype} "
                            f"(weights stored as integers or booleans are not a trained model's)")
    if problems:
        raise CheckpointError(f"{path}: does not fit {type(model).__name__}: " + "; ".join(problems))
    return {key: _read_member(archive, info, path, prefix + key) if key in expected else None
            for key, info in stored.items()}


def is_checkpoint(path) -> bool:
    """True when ``path`` is a file that :func:`save_checkpoint` wrote (it holds a ``__meta__`` entry)."""
    return _META in stored_names(path)


def save(model: Module, path) -> Path:
    """Write ``model.state_dict()`` to ``path`` (.npz), atomically; arrays are copied to the host."""
    return _write_npz_atomic(path, {k: to_numpy(v) for k, v in model.state_dict().items()})


def load(model: Module, path, strict: bool = True) -> Module:
    """Load weights written by :func:`save` (or a checkpoint) into ``model``; returns ``model``.

    A file that does not fit raises :class:`CheckpointError` naming the file,
    the keys or shapes that differ, and the keys the model expects.  Only the
    arrays the model has are read, once their headers declare its shapes: a
    crafted file cannot make loading allocate or inflate more than the model holds.
    """
    path = _file_path(path)
    with _open_npz(path) as archive:
        members = _members(archive)
        arrays = _model_arrays(model, archive, members, "model/" if _META in members else "", path)
    return _load_model(model, arrays, path, strict)


def _load_model(model: Module, arrays: dict, path: Path, strict: bool = True) -> Module:
    try:
        return model.load_state_dict(arrays, strict=strict)
    except StateDictError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


# --- checkpoints: nested state <-> flat arrays + JSON -----------------------

def _flatten(obj, prefix: str, arrays: dict, where: str):
    """``obj`` for JSON: every array replaced by ``{"__array__": name}`` and stored in ``arrays[name]``.

    ``name`` is ``prefix`` and the path to the array, joined by "/"; a "/" or
    "%" inside a key is escaped, so two paths never give one name.  ``where``
    names ``obj`` in errors: a value of a type JSON does not hold raises
    ``TypeError``, a dict that could be read back as an array ``ValueError``.
    """
    if isinstance(obj, dict):
        if _ARRAY in obj:
            raise ValueError(f"save_checkpoint: {where} has the key {_ARRAY!r}, which checkpoints reserve "
                             f"to mark arrays")
        return {str(k): _flatten(v, f"{prefix}/{_escape(k)}", arrays, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    elif hasattr(obj, "shape") and hasattr(obj, "dtype"):
        array = to_numpy(obj)
        if array.dtype.hasobject:
            raise TypeError(f"save_checkpoint: {where} is an array of Python objects, which loading without "
                            f"pickle cannot read; expected an array of numbers, booleans or strings")
        arrays[prefix] = array
        return {_ARRAY: prefix}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save_checkpoint: {where} is a {type(obj).__name__}; a checkpoint holds numbers, strings, "
                    f"booleans, None, arrays, and lists, tuples and dicts of these")


def _escape(key) -> str:
    return str(key).replace("%", "%25").replace("/", "%2F")


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY}:
            return arrays[obj[_ARRAY]]
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _array_refs(obj, refs: set) -> set:
    """The names that the ``{"__array__": name}`` markers in ``obj`` (parsed JSON) stand for, added to ``refs``."""
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY}:
            if not isinstance(obj[_ARRAY], str):
                raise ValueError(f"an array marker names {obj[_ARRAY]!r}, expected the name of an array")
            refs.add(obj[_ARRAY])
        for v in obj.values():
            _array_refs(v, refs)
    elif isinstance(obj, list):
        for v in obj:
            _array_refs(v, refs)
    return refs


# A checkpoint's JSON part (a history of 1,000 epochs takes about 100 kB), and its other arrays beyond the
# model's: optimizer state (Adam keeps two arrays per parameter, RMSprop up to three) and extras.
_MAX_META_BYTES = 64 * 2**20
_STATE_BYTES_PER_MODEL_BYTE = 4
_MAX_EXTRA_BYTES = 64 * 2**20


def _read_meta(archive: zipfile.ZipFile, members: dict, path: Path) -> tuple[dict, set]:
    """The checkpoint's parsed ``__meta__``, ``{"optimizer": ..., "scheduler": ..., "extra": {...}}``, with
    array markers in place, and the names they refer to; a :class:`CheckpointError` unless it is that."""
    shape, dtype, nbytes, _ = _header(archive, members[_META], path, _META)
    if shape != () or dtype.kind != "U" or nbytes > _MAX_META_BYTES:
        raise CheckpointError(f"{path}: {_META} is a {dtype} array of shape {shape}; expected the JSON text "
                              f"(at most {_MAX_META_BYTES // 2**20} MiB) that save_checkpoint writes there")
    try:
        tree = json.loads(str(_read_member(archive, members[_META], path, _META)))
        if not (isinstance(tree, dict) and set(tree) == {"optimizer", "scheduler", "extra"}
                and isinstance(tree["extra"], dict)):
            raise ValueError('expected {"optimizer": ..., "scheduler": ..., "extra": {...}}')
        refs = _array_refs(tree, set())
    except RecursionError:
        raise CheckpointError(f"{path}: {_META} is nested too deeply to be a checkpoint's state") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: {_META} does not describe a checkpoint: {exc}") from None
    return tree, refs


def _checkpoint_members(path: Path, archive: zipfile.ZipFile) -> dict:
    members = _members(archive)
    if _META not in members:
        raise CheckpointError(f"{path} holds weights only, not a training checkpoint "
                              f"(written by minicnn.save, not minicnn.save_checkpoint)")
    return members


def read_checkpoint_extra(path) -> dict:
    """The ``extra`` dict of the checkpoint at ``path`` (epoch, history...), read without reading any array:
    an entry that is an array comes back as None.  For a look at a checkpoint before building its model."""
    path = _file_path(path)
    with _open_npz(path) as archive:
        tree, refs = _read_meta(archive, _checkpoint_members(path, archive), path)
    return _unflatten(tree, dict.fromkeys(refs))["extra"]


def _read_tree(archive: zipfile.ZipFile, members: dict, path: Path, model: Module) -> dict:
    """The checkpoint's nested state, ``{"optimizer": ..., "scheduler": ..., "extra": {...}}``, arrays in place.

    Everything is checked before an array is read: ``__meta__`` must be a JSON text of that form, each
    array it names must be in the file, and together they may declare at most
    ``_STATE_BYTES_PER_MODEL_BYTE`` times the model's bytes plus ``_MAX_EXTRA_BYTES``.
    """
    tree, refs = _read_meta(archive, members, path)
    missing = sorted(r for r in refs if r not in members or r == _META or r.startswith("model/"))
    if missing:
        raise CheckpointError(f"{path}: {_META} refers to arrays the file does not hold: {', '.join(missing)}")
    sizes = {r: _header(archive, members[r], path, r)[2] for r in refs}
    budget = _STATE_BYTES_PER_MODEL_BYTE * sum(int(v.nbytes) for v in model.state_dict().values()) \
        + _MAX_EXTRA_BYTES
    if sum(sizes.values()) > budget:
        raise CheckpointError(f"{path}: the optimizer, scheduler and extra arrays declare {sum(sizes.values()):,} "
                              f"bytes, more than a checkpoint of this model holds (at most {budget:,}); not read")
    arrays = {r: _read_member(archive, members[r], path, r) for r in refs}
    return _unflatten(tree, arrays)


def save_checkpoint(path, model: Module, optimizer=None, scheduler=None, **extra) -> Path:
    """Write model, optimizer and scheduler state plus ``extra`` (epoch, history...).

    ``extra`` values may be numbers, strings, booleans, None, arrays, and
    lists, tuples and dicts of these (tuples come back as lists, dict keys as
    strings).  Anything else raises an error naming it, and no file is written.
    """
    arrays = {f"model/{k}": to_numpy(v) for k, v in model.state_dict().items()}
    skeleton = {
        "optimizer": _flatten(optimizer.state_dict(), "state/optimizer", arrays, "the optimizer state")
        if optimizer is not None else None,
        "scheduler": _flatten(scheduler.state_dict(), "state/scheduler", arrays, "the scheduler state")
        if scheduler is not None else None,
        "extra": {key: _flatten(value, f"state/extra/{_escape(key)}", arrays, f"extra[{key!r}]")
                  for key, value in extra.items()},
    }
    arrays[_META] = np.array(json.dumps(skeleton))
    return _write_npz_atomic(path, arrays)


def load_checkpoint(path, model: Module, optimizer=None, scheduler=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the ``extra`` dict.

    All or nothing: when a part does not fit, or the file is not a checkpoint
    (a malformed ``__meta__`` too), :class:`CheckpointError` names it and the
    model, optimizer and scheduler are as they were.  As :func:`load`, nothing
    is read before its declared size has been checked.
    """
    path = _file_path(path)
    with _open_npz(path) as archive:
        members = _checkpoint_members(path, archive)
        tree = _read_tree(archive, members, path, model)
        arrays = _model_arrays(model, archive, members, "model/", path)
    parts = [(name, obj) for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)) if obj is not None]
    for name, _ in parts:
        if tree[name] is None:
            raise CheckpointError(f"{path} holds no {name} state")
    # Each load_state_dict checks everything before it changes anything, and the
    # model's comes last; so on a failure only the parts loaded before it need
    # undoing, from copies (the optimizer's and scheduler's state dicts copy).
    before = [(obj, obj.state_dict()) for _, obj in parts]
    try:
        for name, obj in parts:
            try:
                obj.load_state_dict(tree[name])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"{path}: the {name} state does not fit: {exc}") from None
        _load_model(model, arrays, path)
    except BaseException:
        for obj, state in before:
            obj.load_state_dict(state)
        raise
    return tree["extra"]
