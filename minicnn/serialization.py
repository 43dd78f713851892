"""Saving and loading weights and training checkpoints as ``.npz`` files.

Weights (:func:`save` / :func:`load`): one array per ``state_dict`` entry,
under the same dotted names PyTorch uses (``conv1.weight``, ...), so
``numpy.load`` shows exactly what a model holds.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`): nested state
(model, optimizer, scheduler, epoch, history, random-generator states) is
flattened into arrays named by their path, plus one JSON document for
everything that is not an array; in it, ``{"__array__": name}`` stands for
the array stored under ``name``.  Files are read with ``allow_pickle=False``:
loading a file never runs code.  Paths may start with ``~``.

Every write goes to a temporary file in the destination folder and is then
renamed over the target, so a crash leaves the old file or the new one,
never half of one. The same writer (:func:`write_atomic`) writes the package's other files:
text and JSON reports (:func:`write_text_atomic`, :func:`write_json_atomic`) and figures
(:func:`minicnn.plots.save_figure`).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from minicnn.backend import to_numpy
from minicnn.nn.module import Module
from minicnn.nn.state import StateDictError

_META = "__meta__"
_ARRAY = "__array__"


class CheckpointError(ValueError):
    """A weights or checkpoint file is missing, unreadable or does not fit."""


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
    """
    path = Path(path)
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
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a reader sees the old file or the new one."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


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


def read_npz(path: Path) -> dict:
    """The arrays of the file at ``path`` (a path from :func:`_file_path`)."""
    if not path.is_file():
        raise CheckpointError(f"no such weights file: {path}")
    # np.load would try any other file as a pickle and answer with advice to
    # load it unsafely; a .npz file is a zip archive, so check for one first.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a .npz file: expected a zip archive of arrays as written by "
                              f"minicnn.save or save_checkpoint (the file may be of another kind, or truncated)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable .npz file ({exc})") from None


def is_checkpoint(path) -> bool:
    """True when ``path`` is a file that :func:`save_checkpoint` wrote (it holds a ``__meta__`` entry)."""
    return _META in read_npz(_file_path(path))


def save(model: Module, path) -> Path:
    """Write ``model.state_dict()`` to ``path`` (.npz), atomically; arrays are copied to the host."""
    return _write_npz_atomic(path, {k: to_numpy(v) for k, v in model.state_dict().items()})


def load(model: Module, path, strict: bool = True) -> Module:
    """Load weights written by :func:`save` (or a checkpoint) into ``model``; returns ``model``.

    A file that does not fit raises :class:`CheckpointError` naming the file,
    the keys or shapes that differ, and the keys the model expects.
    """
    path = _file_path(path)
    return _load_model(model, read_npz(path), path, strict)


def _load_model(model: Module, arrays: dict, path: Path, strict: bool = True) -> Module:
    if _META in arrays:  # a checkpoint: take its model part
        arrays = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
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

    All or nothing: when a part does not fit, :class:`CheckpointError` names
    it and the model, optimizer and scheduler are as they were.
    """
    path = _file_path(path)
    arrays = read_npz(path)
    if _META not in arrays:
        raise CheckpointError(f"{path} holds weights only, not a training checkpoint "
                              f"(written by minicnn.save, not minicnn.save_checkpoint)")
    tree = _unflatten(json.loads(str(arrays[_META])), arrays)
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
            except (ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{path}: the {name} state does not fit: {exc}") from None
        _load_model(model, arrays, path)
    except BaseException:
        for obj, state in before:
            obj.load_state_dict(state)
        raise
    return tree["extra"]
