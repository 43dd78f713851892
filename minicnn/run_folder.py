"""A run's output folder (``--out`` of ``minicnn train`` and ``evaluate``): one run at a time, all or nothing.

    with claim(out, "minicnn train"):      # out/.minicnn.lock, or FolderInUseError naming its holder
        write_together(out, write, remove=("curves.png",))

:func:`claim` takes an exclusive lock (``flock``) on ``out/.minicnn.lock``, so a second run into the same
folder stops at once and names the process holding it; the lock goes with the process, so a killed run
leaves nothing that blocks the next one.  Holding it, :func:`claim` removes what a killed run left there:
its staging folders ``.writing-*`` and the temporary files ``.NAME.XXXXXXXX.tmp`` of an atomic write.

:func:`write_together` replaces a set of files as one: ``write(staging)`` writes them into an empty
folder inside ``out``; only when all are complete are the old ones moved aside and the new ones moved in
(one rename each), and the files named in ``remove`` (reports an older run made and this one does not)
taken away.  When any step fails, every file is put back: ``out`` holds the old set or the new set,
never a mix.  Errors name the files in ``out``, not the staging folder.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not kept apart
    fcntl = None

LOCK_NAME = ".minicnn.lock"
STAGING_PREFIX = ".writing-"
# write_together's staging folders: the prefix + the 8 random characters of tempfile's names
_STAGING = re.compile(r"^\.writing-[a-z0-9_]{8}$")
# serialization.write_atomic's temporary files: "." + target name + "." + 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class FolderInUseError(RuntimeError):
    """Another run holds the lock on the output folder."""


@contextlib.contextmanager
def claim(out: Path, command: str):
    """Hold the lock on ``out`` for the ``with`` block, after removing a killed run's leftovers there.

    ``command`` (``"minicnn train"``) is written into the lock file, so that a second run can say who
    holds it.  Yields the names of the leftovers removed.
    """
    out = Path(out)
    with open(out / LOCK_NAME, "a+", encoding="utf-8") as lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise FolderInUseError(f"{out} is in use by {holder}, which is writing there; wait for it to "
                                       f"finish or choose another folder") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()} ({command})\n")
        lock.flush()
        yield _remove_leftovers(out)


def _remove_leftovers(out: Path) -> list[str]:
    removed = []
    for entry in sorted(out.iterdir()):
        if _STAGING.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif _TEMPORARY.match(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink()
        else:
            continue
        removed.append(entry.name)
    return removed


def check_targets(out: Path, names) -> None:
    """``IsADirectoryError`` naming the first of ``out / name`` that is a folder, where a file belongs."""
    for name in names:
        target = Path(out) / name
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, where this run writes a file; move it away or "
                                                  "choose another folder", str(target))


def write_together(out: Path, write, remove=()) -> list[str]:
    """Call ``write(staging)`` on an empty folder inside ``out``, then replace ``out``'s files by those it wrote.

    ``write`` returns the names of the files it wrote; the names in ``remove`` that it did not write are
    removed from ``out``.  All or nothing (see the module docstring).  Returns the names written.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=out) as staging:
        staging = Path(staging)
        try:
            names = write(staging)
            gone = [n for n in remove if n not in names]
            check_targets(out, [*names, *gone])
            _replace(out, staging, names, gone)
        except OSError as exc:
            raise _named_in_out(exc, staging, out) from None
    return names


def _replace(out: Path, staging: Path, names, gone) -> None:
    old = staging / ".old"
    old.mkdir()
    moved, placed = [], []
    try:
        for name in [*names, *gone]:
            if os.path.lexists(out / name):
                os.replace(out / name, old / name)
                moved.append(name)
        for name in names:
            os.replace(staging / name, out / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            os.replace(out / name, staging / name)
        for name in moved:
            os.replace(old / name, out / name)
        raise


def _named_in_out(exc: OSError, staging: Path, out: Path) -> OSError:
    """``exc`` with a file name inside ``staging`` (or a temporary file there) replaced by the file in ``out``."""
    if exc.filename is None or exc.strerror is None:
        return exc
    try:
        relative = Path(exc.filename).relative_to(staging)
    except ValueError:
        return exc
    name = relative.parts[-1] if relative.parts else ""
    if _TEMPORARY.match(name):
        name = name[1:-len(".XXXXXXXX.tmp")]
    return type(exc)(exc.errno, exc.strerror, str(out / name))
