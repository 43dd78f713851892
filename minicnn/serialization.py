"""Saving and loading weights and training checkpoints as ``.npz`` files.

Weights (:func:`save` / :func:`load`): one array per ``state_dict`` entry,
under the same dotted names PyTorch uses (``conv1.weight``, ...), so
``numpy.load`` shows exactly what a model holds.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`): nested state
(model, optimizer, scheduler, epoch, history, random-generator states) is
flattened into arrays named by their path, plus one JSON document for
everything that is not an array.  Files are read with ``allow_pickle=False``:
loading a file never runs code.

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
from minicnn.nn.module import Module, StateDictError

_META = "__meta__"


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


def _write_npz_atomic(path, arrays: dict) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a file path such as {path / 'model.npz'}")
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def _read_npz(path) -> dict:
    path = Path(path)
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


def save(model: Module, path) -> Path:
    """Write ``model.state_dict()`` to ``path`` (.npz), atomically; arrays are copied to the host."""
    return _write_npz_atomic(path, {k: to_numpy(v) for k, v in model.state_dict().items()})


def load(model: Module, path, strict: bool = True) -> Module:
    """Load weights written by :func:`save` (or a checkpoint) into ``model``; returns ``model``.

    A file that does not fit raises :class:`CheckpointError` naming the file,
    the keys or shapes that differ, and the keys the model expects.
    """
    arrays = _read_npz(path)
    if _META in arrays:  # a checkpoint: take its model part
        arrays = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    try:
        return model.load_state_dict(arrays, strict=strict)
    except StateDictError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


# --- checkpoints: nested state <-> flat arrays + JSON -----------------------

def _flatten(obj, prefix, arrays):
    """Replace every array in ``obj`` by a reference and collect it in ``arrays``."""
    if isinstance(obj, dict):
        return {str(k): _flatten(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, np.generic):
        arrays[prefix] = to_numpy(obj)
        return {"__array__": prefix}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def save_checkpoint(path, model: Module, optimizer=None, scheduler=None, **extra) -> Path:
    """Write model, optimizer and scheduler state plus JSON-able ``extra`` (epoch, history...)."""
    arrays = {f"model/{k}": to_numpy(v) for k, v in model.state_dict().items()}
    tree = {
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra,
    }
    skeleton = _flatten(tree, "state", arrays)
    arrays[_META] = np.array(json.dumps(skeleton))
    return _write_npz_atomic(path, arrays)


def load_checkpoint(path, model: Module, optimizer=None, scheduler=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the ``extra`` dict."""
    arrays = _read_npz(path)
    if _META not in arrays:
        raise CheckpointError(f"{path} holds weights only, not a training checkpoint "
                              f"(written by minicnn.save, not minicnn.save_checkpoint)")
    load(model, path)
    tree = _unflatten(json.loads(str(arrays[_META])), arrays)
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if tree[name] is None:
            raise CheckpointError(f"{path} holds no {name} state")
        try:
            obj.load_state_dict(tree[name])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: the {name} state does not fit: {exc}") from None
    return tree["extra"]
