"""Where the command line writes: output paths checked before any long work, and sets of files written together.

A bad ``--out`` costs nothing: :func:`output_folder` and :func:`output_file`
create the folder and write a probe file there first, and a problem is a
usage error (exit status 2) naming the option, the path and what is wrong.
:func:`write_together` replaces a set of files together or not at all.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def output_folder(parser: argparse.ArgumentParser, option: str, path) -> Path:
    """Create the folder ``path`` that ``option`` names (and its parents) and check that files can be written there.

    Anything wrong is a usage error (exit status 2) naming the option, the path and the problem.
    """
    path = Path(path)
    _check_writable(parser, f"{option} {path}", path)
    return path


def output_file(parser: argparse.ArgumentParser, option: str, path) -> Path:
    """Check that the file ``path`` that ``option`` names can be written (creating its folder).

    As :func:`output_folder`, anything wrong is a usage error naming the option, the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        parser.error(f"{option} {path}: is a folder, expected a file name")
    _check_writable(parser, f"{option} {path}", path.parent)
    return path


def _check_writable(parser, what: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        # When the longest part of the path that exists is a file, name that file.
        blocker = next((f for f in (folder, *folder.parents) if os.path.exists(f)), None)
        if blocker is not None and not os.path.isdir(blocker):
            parser.error(f"{what}: {blocker} is a file, not a folder")
        parser.error(f"{what}: {exc.strerror or exc}")


def write_together(out: Path, write) -> list[str]:
    """Call ``write(folder)`` on an empty temporary folder inside ``out``, then move the files it names into ``out``.

    ``write`` returns the names of the files it wrote.  When it fails, ``out`` is left as it was; the moves
    (``os.replace``, one rename each) only start once every file is complete.  Returns the names.
    """
    with tempfile.TemporaryDirectory(prefix=".writing-", dir=out) as staging:
        names = write(Path(staging))
        for name in names:
            os.replace(Path(staging) / name, out / name)
    return names
