"""A run's output folder (``--out`` of ``minicnn train`` and ``evaluate``): one run at a time, all or nothing.

    with claim(out, "minicnn train"):      # out/.minicnn.lock, or FolderInUseError naming its holder
        write_together(out, write, remove=("curves.png",))

:func:`claim` takes an exclusive lock (``flock``) on ``out/.minicnn.lock``, so a second run into the same
folder stops at once and names the process holding it; the lock goes with the process, so a killed run
leaves nothing that blocks the next one.  The lock is opened without following a link: a lock file that
is a symbolic link or not a regular file is refused (:class:`~minicnn.serialization.UnsafePathError`),
never truncated or written through.  Holding it, :func:`claim` removes what a killed run left there, and
only what it can prove is minicnn's own: a staging folder ``.writing-XXXXXXXX`` that holds the mark
:func:`write_together` puts in each (or is empty), and the temporary file ``.checkpoint.npz.XXXXXXXX.tmp``
of the one file written straight into the folder (every other file is written inside a staging folder).
A user's ``.writing-abcdefgh/`` without the mark, or ``.notes.abcdefgh.tmp``, stays.

:func:`write_together` replaces a set of files as one: ``write(staging)`` writes them into an empty
folder inside ``out``; only when all are complete are the old ones moved aside and the new ones moved in
(one rename each), and the files named in ``remove`` (reports an older run made and this one does not)
taken away.  When any step fails, every file is put back: ``out`` holds the old set or the new set,
never a mix.  Errors name the files in ``out``, not the staging folder.  As every write of minicnn's, it
replaces no symbolic link and no special file: :func:`check_targets` refuses them, and folders.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from minicnn.serialization import UnsafePathError, check_destination, file_kind

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not kept apart
    fcntl = None

LOCK_NAME = ".minicnn.lock"
STAGING_PREFIX = ".writing-"
STAGING_MARK = ".minicnn-staging"   # the empty file write_together puts first into each staging folder
# write_together's staging folders: the prefix + the 8 random characters of tempfile's names
_STAGING = re.compile(r"^\.writing-[a-z0-9_]{8}$")
# serialization.write_atomic's temporary files: "." + target name + "." + 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
# ... of which the one minicnn makes in a run folder itself: the checkpoint's, written after every epoch
_CHECKPOINT_TEMPORARY = re.compile(r"^\.checkpoint\.npz\.[a-z0-9_]{8}\.tmp$")


class FolderInUseError(RuntimeError):
    """Another run holds the lock on the output folder."""


@contextlib.contextmanager
def claim(out: Path, command: str):
    """Hold the lock on ``out`` for the ``with`` block, after removing a killed run's leftovers there.

    ``command`` (``"minicnn train"``) is written into the lock file, so that a second run can say who
    holds it.  Yields the names of the leftovers removed.
    """
    out = Path(out)
    with os.fdopen(_open_lock(out / LOCK_NAME), "r+", encoding="utf-8") as lock:
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


_LOCK_FLAGS = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0))


def _open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path``, created if need be, opened for reading and writing without
    following a link; :class:`UnsafePathError` when ``path`` is a symbolic link, not a regular file, or a
    file with other names (hard links): what the lock's holder writes there must land in no other file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise _not_a_lock(path, mode)  # refused before it is opened (opening a device can do things)
    try:
        fd = os.open(path, _LOCK_FLAGS, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link put there since: O_NOFOLLOW refused it
            raise _not_a_lock(path, stat.S_IFLNK) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise _not_a_lock(path, st.st_mode, st.st_nlink)
    return fd


def _not_a_lock(path: Path, mode: int, links: int = 1) -> UnsafePathError:
    if stat.S_ISLNK(mode):
        try:
            what = f"a symbolic link to {os.readlink(path)}"
        except OSError:
            what = "a symbolic link"
    elif stat.S_ISREG(mode):
        what = f"a file with {links - 1} other name{'s' if links > 2 else ''} (hard links)"
    else:
        what = f"a {file_kind(mode)}"
    return UnsafePathError(errno.EEXIST, f"is {what}, not the lock file minicnn keeps there, and would be written "
                                         f"through; remove it (minicnn creates its own)", str(path))


def _remove_leftovers(out: Path) -> list[str]:
    removed = []
    for entry in sorted(out.iterdir()):
        if entry.is_symlink():
            continue
        if _STAGING.match(entry.name) and entry.is_dir():
            if (entry / STAGING_MARK).is_file() and not (entry / STAGING_MARK).is_symlink():
                shutil.rmtree(entry)
            elif not any(entry.iterdir()):   # killed before it was marked
                entry.rmdir()
            else:
                continue
        elif _CHECKPOINT_TEMPORARY.match(entry.name) and entry.is_file():
            entry.unlink()
        else:
            continue
        removed.append(entry.name)
    return removed


def check_targets(out: Path, names) -> None:
    """``IsADirectoryError`` naming the first of ``out / name`` that is a folder, where a file belongs, or
    :class:`UnsafePathError` the first that is a symbolic link or a special file (a device, a FIFO...)."""
    for name in names:
        target = Path(out) / name
        check_destination(target)
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
            (staging / STAGING_MARK).touch()   # what tells a killed run's staging folder from a user's
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
