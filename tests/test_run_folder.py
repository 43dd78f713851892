"""An output folder: one run at a time, a killed run's leftovers removed, a set of files replaced together."""
import errno
import os
import subprocess
import sys

import pytest

from minicnn import run_folder
from minicnn.run_folder import FolderInUseError, claim, write_together


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _writer(contents):
    def write(folder):
        for name, data in contents.items():
            (folder / name).write_bytes(data)
        return list(contents)
    return write


@pytest.fixture
def old_run(tmp_path):
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_bytes(b"old " + name.encode())
    return tmp_path


def test_files_are_replaced_and_stale_ones_removed_together(old_run):
    assert write_together(old_run, _writer({"a.txt": b"new a", "b.txt": b"new b"}), remove=("c.txt", "x.txt")) \
        == ["a.txt", "b.txt"]
    assert _files(old_run) == {"a.txt": b"new a", "b.txt": b"new b"}
    assert sorted(os.listdir(old_run)) == ["a.txt", "b.txt"], "no staging folder left"


def test_a_failed_move_puts_every_file_back(old_run, monkeypatch):
    before = _files(old_run)
    replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 5:  # the second new file moving in, after the three old ones moved aside
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return replace(src, dst)

    monkeypatch.setattr(run_folder.os, "replace", failing_replace)
    with pytest.raises(OSError) as info:
        write_together(old_run, _writer({"a.txt": b"new a", "b.txt": b"new b", "c.txt": b"new c"}))
    monkeypatch.undo()
    assert info.value.filename == str(old_run / "b.txt"), "named as the file in the folder, not the staging copy"
    assert _files(old_run) == before
    assert sorted(os.listdir(old_run)) == ["a.txt", "b.txt", "c.txt"]


def test_a_folder_in_the_way_changes_nothing(old_run):
    before = _files(old_run)
    (old_run / "d.txt").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        write_together(old_run, _writer({"a.txt": b"new a", "d.txt": b"new d"}))
    assert info.value.filename == str(old_run / "d.txt")
    assert info.value.strerror == "is a folder, where this run writes a file; move it away or choose another folder"
    assert _files(old_run) == before and (old_run / "d.txt").is_dir()


def test_a_full_disk_while_writing_names_the_file_and_changes_nothing(old_run):
    before = _files(old_run)

    def write(folder):
        from minicnn.serialization import write_atomic

        (folder / "a.txt").write_bytes(b"new a")

        def disk_full(f):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk: no file name
        write_atomic(folder / "b.txt", disk_full)

    with pytest.raises(OSError) as info:
        write_together(old_run, write)
    assert (info.value.filename, info.value.strerror) == (str(old_run / "b.txt"), "No space left on device")
    assert _files(old_run) == before and sorted(os.listdir(old_run)) == ["a.txt", "b.txt", "c.txt"]


def test_claim_removes_what_a_killed_run_left(tmp_path):
    (tmp_path / ".writing-k2j4h1ab").mkdir()
    (tmp_path / ".writing-k2j4h1ab" / run_folder.STAGING_MARK).touch()
    (tmp_path / ".writing-k2j4h1ab" / "model.npz").write_bytes(b"half")
    (tmp_path / ".checkpoint.npz.a8xk_3zq.tmp").write_bytes(b"half")
    kept = [".notes.tmp", "model.npz", ".writing-notes.txt", ".checkpoint.npz.A8XK_3ZQ.tmp"]  # (mkstemp: lowercase)
    for name in kept:
        (tmp_path / name).write_bytes(b"keep")
    with claim(tmp_path, "minicnn train") as removed:
        assert removed == [".checkpoint.npz.a8xk_3zq.tmp", ".writing-k2j4h1ab"]
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, run_folder.LOCK_NAME])


@pytest.mark.skipif(run_folder.fcntl is None, reason="no fcntl (advisory file locks) on this platform")
def test_a_second_run_names_the_process_holding_the_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from minicnn.run_folder import claim\n"
                               f"with claim({str(tmp_path)!r}, 'minicnn train'):\n"
                               "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(FolderInUseError) as info:
            with claim(tmp_path, "minicnn evaluate"):
                pass
        assert str(info.value) == (f"{tmp_path} is in use by process {holder.pid} (minicnn train), which is writing "
                                   f"there; wait for it to finish or choose another folder")
    finally:
        holder.communicate("")
    with claim(tmp_path, "minicnn evaluate"):  # free again once that process is gone
        assert (tmp_path / run_folder.LOCK_NAME).read_text() == f"process {os.getpid()} (minicnn evaluate)\n"
