"""Where the command line writes: output paths and `~` in them, checked before any long work.

A bad ``--out`` costs nothing: :func:`output_folder` and :func:`output_file`
create the folder and write a probe file there first, and a problem is a
usage error (exit status 2) naming the option, the path and what is wrong.
The folder itself, while a run writes into it (one run at a time, a set of
files replaced together or not at all), is :mod:`minicnn.run_folder`'s.

Refused before any work, each in one line: an empty path (``--out ''`` would
mean the current folder), a loop of symbolic links, an output folder that is
a link to nothing, and an output file (or a file an output folder will hold)
that is a symbolic link or a special file (no write of minicnn's follows a
link or replaces a device, a FIFO or a socket; see
:func:`minicnn.serialization.check_destination`).
"""
from __future__ import annotations

import argparse
import errno
import os
import tempfile
from pathlib import Path

from minicnn.run_folder import check_targets
from minicnn.serialization import UnsafePathError, check_destination


def path_argument(text: str) -> Path:
    """A path option's value with ``~`` expanded, as the shell does for ``--out ~/run`` but not ``--out=~/run``.

    Every path option and argument takes this ``type``, so that a path means one place everywhere:
    the one checked before the work is the one written after it.  An empty path (which would mean the
    current folder: ``--out ''`` would replace ./model.npz) and a loop of symbolic links raise
    ``argparse.ArgumentTypeError``, which argparse reports as a usage error naming the option.
    """
    if not text:
        raise argparse.ArgumentTypeError(f"an empty path ({text!r}); name a file or a folder (. for the "
                                         f"current folder)")
    path = Path(text).expanduser()
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise argparse.ArgumentTypeError(f"{path}: symbolic links in a loop, which lead to no file or "
                                             f"folder") from None
    return path


def _path(parser: argparse.ArgumentParser, option: str, path) -> Path:
    """:func:`path_argument` of ``path``, its refusal a usage error naming ``option``."""
    try:
        return path_argument(str(path))
    except argparse.ArgumentTypeError as exc:
        parser.error(f"{option}: {exc}")


def output_folder(parser: argparse.ArgumentParser, option: str, path, files=()) -> Path:
    """Create the folder ``path`` that ``option`` names (and its parents) and check that files can be written there.

    ``files``: the names the command will write there; a folder of such a name is in the way.
    Anything wrong is a usage error (exit status 2) naming the option, the path and the problem.
    """
    path = _path(parser, option, path)
    _check_writable(parser, f"{option} {path}", path)
    try:
        check_targets(path, files)
    except (IsADirectoryError, UnsafePathError) as exc:
        parser.error(f"{option} {path}: {exc.filename} {exc.strerror}")
    return path


def output_file(parser: argparse.ArgumentParser, option: str, path) -> Path:
    """Check that the file ``path`` that ``option`` names can be written (creating its folder).

    As :func:`output_folder`, anything wrong is a usage error naming the option, the path and the problem.
    """
    path = _path(parser, option, path)
    if path.is_dir():
        parser.error(f"{option} {path}: is a folder, expected a file name")
    try:
        check_destination(path)
    except UnsafePathError as exc:
        parser.error(f"{option} {path}: {exc.strerror}")
    _check_writable(parser, f"{option} {path}", path.parent)
    return path


def _check_writable(parser, what: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        # A symbolic link to nothing, on the way: name it (mkdir says only "File exists").
        dangling = next((f for f in (folder, *folder.parents) if os.path.islink(f) and not os.path.exists(f)), None)
        if dangling is not None:
            where = "" if dangling == folder else f"{dangling} "
            parser.error(f"{what}: {where}is a symbolic link to {os.readlink(dangling)}, which does not "
                         f"exist; create that folder or remove the link")
        # When the longest part of the path that exists is a file, name that file.
        blocker = next((f for f in (folder, *folder.parents) if os.path.exists(f)), None)
        if blocker is not None and not os.path.isdir(blocker):
            parser.error(f"{what}: {blocker} is a file, not a folder")
        parser.error(f"{what}: {exc.strerror or exc}")
