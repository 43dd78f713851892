"""The learner's workspace: a folder of exercise files, which of them are done, and which hint comes next.

    minicnn-exercises/          (--dir DIR)
        relu.py                 from `minicnn exercise start relu`: the signatures, the shapes and formulas
                                in docstrings, and bodies that raise NotImplementedError
        conv2d_forward.py       its `from im2col import im2col` finds the learner's own im2col.py beside it
        .progress.json          {"passed": {"relu": "<sha256>"}, "hints": {"relu": 2}}

An exercise is *done* while its check has passed and neither its file nor another exercise's file
that it imports (directly or through another) has changed since: .progress.json keeps the SHA-256 of
those files, taken as the check began.  :func:`load` imports a file as Python runs a script: its
folder first on ``sys.path``, so ``from im2col import im2col`` is the learner's own im2col
(:func:`imported` takes both away again after a check).  A syntax error, a failed import or a
missing function is one line (:class:`WorkspaceError`); a starter file is never written over
another file unless asked.

Docs: docs/exercises.md
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from minicnn.exercises.calls import error_in
from minicnn.serialization import write_json_atomic, write_text_atomic

DEFAULT_DIR = Path("minicnn-exercises")
PROGRESS = ".progress.json"
_DOCS = Path(__file__).resolve().parents[2] / "docs"


class WorkspaceError(ValueError):
    """A workspace file that cannot be written or imported, said in one line."""


def file_of(folder, name: str) -> Path:
    return Path(folder) / f"{name}.py"


def docs_reference(exercise) -> str:
    """``docs/layers.md#relu``, and the page's full path where the docs lie beside the package (a clone)."""
    page = exercise.docs.partition("#")[0]
    local = _DOCS / Path(page).name
    return exercise.docs + (f"  ({local})" if local.is_file() else "")


def starter_text(exercise) -> str:
    return exercise.starter.replace("{docs}", docs_reference(exercise))


def start(exercise, folder, force: bool = False) -> Path:
    """Write the exercise's starter file into ``folder``; an existing file only with ``force``."""
    path = file_of(folder, exercise.name)
    if path.exists() and not force:
        raise WorkspaceError(f"{path} exists (your work is kept); --force writes a fresh starter file over it")
    if path.is_dir():
        raise WorkspaceError(f"{path} is a folder; the exercise file goes there")
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, starter_text(exercise))
    return path


# --- importing a learner's file ---------------------------------------------------------------------

def _forget_workspace_modules(folder: Path) -> None:
    """Drop the modules of this workspace, and of any workspace, imported earlier in this process, so that edited
    files are read again and ``from im2col import im2col`` finds this folder's im2col.py."""
    from minicnn.exercises.catalog import EXERCISES

    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name in EXERCISES or isinstance(file, str) and os.path.dirname(file) == str(folder):
            del sys.modules[name]


def load(exercise, path):
    """The learner's module for ``exercise`` from the file ``path``, with its ``label`` (the file name) set."""
    path = Path(path)
    if not path.is_file():
        folder = path.parent
        raise WorkspaceError(f"{path} does not exist; minicnn exercise start {exercise.name}"
                             f"{'' if folder == DEFAULT_DIR else f' --dir {folder}'} writes it")
    folder = path.parent.resolve()
    _forget_workspace_modules(folder)
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    sys.path.insert(0, str(folder))  # first: a workspace met earlier must not answer for this one
    spec = importlib.util.spec_from_file_location(exercise.name, folder / path.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[exercise.name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[exercise.name]
        if exc.filename and Path(exc.filename).resolve() != path.resolve():  # in a file it imports
            raise WorkspaceError(f"{path} imports {Path(exc.filename).name}: line {exc.lineno} of it: {exc.msg}") \
                from None
        raise WorkspaceError(f"{path}, line {exc.lineno}: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        del sys.modules[exercise.name]
        missing = exc.name or ""
        advice = ""
        if missing in exercise.builds_on:
            advice = (f"; {exercise.name} builds on {missing}: write it first (minicnn exercise start {missing}), "
                      f"or import the reference, as the comment beside that import says")
        raise WorkspaceError(f"{path}: {error_in(exc)}{advice}") from None
    except Exception as exc:  # whatever the learner's file runs when imported
        del sys.modules[exercise.name]
        raise WorkspaceError(f"{path}: importing it raised {error_in(exc)}") from None
    missing = [name for name in exercise.functions if not callable(getattr(module, name, None))]
    if missing:
        raise WorkspaceError(f"{path} defines no function {', '.join(missing)} (exercise {exercise.name} asks for "
                             f"{', '.join(exercise.functions)})")
    module.label = path.name
    return module


@contextmanager
def imported(exercise, path):
    """:func:`load`'s module inside the block; after it, the workspace's folder leaves ``sys.path`` and its
    modules leave ``sys.modules``, so that a notebook's own imports are as they were before the check."""
    before = list(sys.path)
    try:
        yield load(exercise, path)
    finally:
        sys.path[:] = before
        _forget_workspace_modules(Path(path).parent.resolve())


# --- progress: what is done, which hint is next ---------------------------------------------------------

def _imports(text: str, names) -> list[str]:
    """The names among ``names`` that the Python source ``text`` imports (``from im2col import``, ``import im2col``)."""
    return [name for name in names if re.search(rf"^\s*(from\s+{name}\s+import|import\s+{name}\b)", text, flags=re.M)]


def fingerprint(exercise, folder) -> str:
    """SHA-256 of the exercise's file and of every exercise file of the workspace that it imports, directly or
    through another (conv2d_backward.py may import im2col.py as well as col2im.py, which it builds on)."""
    from minicnn.exercises.catalog import EXERCISES

    digest, seen, waiting = hashlib.sha256(), set(), [exercise.name]
    while waiting:
        name = waiting.pop(0)
        path = file_of(folder, name)
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        data = path.read_bytes()
        digest.update(name.encode() + b"\0" + data + b"\0")
        waiting += _imports(data.decode("utf-8", errors="replace"), EXERCISES)
    return digest.hexdigest()


def read_progress(folder) -> dict:
    path = Path(folder) / PROGRESS
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"passed": {}, "hints": {}}
    if not isinstance(progress, dict):
        return {"passed": {}, "hints": {}}
    return {key: progress.get(key) if isinstance(progress.get(key), dict) else {} for key in ("passed", "hints")}


def _write_progress(folder, progress: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(folder) / PROGRESS, progress)


def record_pass(exercise, folder, checked: str | None = None) -> None:
    """Record that the check passed on the files whose :func:`fingerprint` was ``checked`` (taken before the check
    began, so that an edit saved while it ran leaves the exercise *changed*, not done unchecked); else on them now."""
    progress = read_progress(folder)
    progress["passed"][exercise.name] = fingerprint(exercise, folder) if checked is None else checked
    _write_progress(folder, progress)


def status(exercise, folder) -> str:
    """``done``, ``changed`` (passed, then edited), ``started`` (a file, not passed yet) or ``-`` (no file)."""
    if not file_of(folder, exercise.name).is_file():
        return "-"
    passed = read_progress(folder)["passed"].get(exercise.name)
    if passed is None:
        return "started"
    return "done" if passed == fingerprint(exercise, folder) else "changed"


def next_hint(exercise, folder, tier: int | None = None) -> int:
    """The tier (1, 2, 3) to show: ``tier`` if given, else the one after the last shown (3 stays 3)."""
    progress = read_progress(folder)
    shown = progress["hints"].get(exercise.name, 0)
    if tier is None:
        tier = min(int(shown) + 1 if isinstance(shown, int) else 1, len(exercise.hints))
    if Path(folder).is_dir():  # remembered only in a workspace that exists
        progress["hints"][exercise.name] = max(tier, shown if isinstance(shown, int) else 0)
        _write_progress(folder, progress)
    return tier
