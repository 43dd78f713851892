"""No write follows a link or replaces a special file; paths that mean nothing (or the current folder by
accident) are refused in one line; unreadable and oversized inputs are named for what they are (issue 32)."""
import argparse
import builtins
import gzip
import os
import stat
import tracemalloc

import numpy as np
import pytest

import minicnn
from minicnn import cli, models, paths
from minicnn.data import DataError, read_idx
from minicnn.run_folder import claim, write_together
from minicnn.serialization import CheckpointError, stored_names, write_atomic, write_json_atomic

@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """An (untrained) MnistCNN's weights file: what evaluate needs to reach its --out."""
    return minicnn.save(models.MnistCNN(seed=0), tmp_path_factory.mktemp("weights") / "model.npz")


def _victim(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


def _one_error_line(capsys, prog):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"{prog}: error: ") and "Traceback" not in "".join(err), err
    return err[-1]


# --- item 3: the lock -------------------------------------------------------------------------

def test_a_lock_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    victim, out = _victim(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / ".minicnn.lock").symlink_to(victim)
    with pytest.raises(OSError, match=r"\.minicnn\.lock: is a symbolic link to .*victim\.txt, not the lock file"):
        with claim(out, "minicnn train"):
            pass
    assert victim.read_text() == "precious\n" and (out / ".minicnn.lock").is_symlink()


def test_evaluate_says_so_in_one_line(weights, tmp_path, capsys):
    victim, out = _victim(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / ".minicnn.lock").symlink_to(victim)
    assert cli.main(["evaluate", str(weights), "--out", str(out), "--limit", "10"]) == 1
    assert "is a symbolic link to" in _one_error_line(capsys, "minicnn evaluate")
    assert victim.read_text() == "precious\n"


def test_a_lock_that_is_a_fifo_or_a_hard_link_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / ".minicnn.lock")
    with pytest.raises(OSError, match=r"is a FIFO \(named pipe\), not the lock file"):
        with claim(out, "minicnn train"):
            pass
    (out / ".minicnn.lock").unlink()
    victim = _victim(tmp_path)
    os.link(victim, out / ".minicnn.lock")
    with pytest.raises(OSError, match=r"is a file with 1 other name \(hard links\), not the lock file"):
        with claim(out, "minicnn train"):
            pass
    assert victim.read_text() == "precious\n"


# --- item 4: atomic writes --------------------------------------------------------------------

def _special_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    found = [fifo]
    if os.geteuid() == 0:  # a copy of /dev/null, as the issue made it
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found.append(tmp_path / "null")
    return found


def test_an_atomic_write_replaces_no_special_file(tmp_path):
    for special in _special_files(tmp_path):
        mode = os.lstat(special).st_mode
        with pytest.raises(OSError, match=r"is a (FIFO|character device).*not a regular file") as info:
            write_json_atomic(special, {"a": 1})
        assert info.value.filename == str(special)
        assert os.lstat(special).st_mode == mode, "still the special file"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "no temporary file left"


def test_an_atomic_write_follows_no_link_and_replaces_none(tmp_path):
    victim = _victim(tmp_path)
    link, dangling = tmp_path / "report.json", tmp_path / "dangling.json"
    link.symlink_to(victim)
    dangling.symlink_to(tmp_path / "nowhere")
    for path in (link, dangling):
        with pytest.raises(OSError, match=r"is a symbolic link to .*; minicnn writes no file through a link"):
            write_atomic(path, lambda f: f.write(b"new"))
        assert path.is_symlink()
    assert victim.read_text() == "precious\n" and not (tmp_path / "nowhere").exists()


def test_bench_json_on_a_special_file_is_a_usage_error(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="minicnn bench")
    for special in _special_files(tmp_path):
        with pytest.raises(SystemExit) as info:
            paths.output_file(parser, "--json", special)
        assert info.value.code == 2
        assert f"--json {special}: is a " in _one_error_line(capsys, "minicnn bench")
        assert not stat.S_ISREG(os.lstat(special).st_mode)


def test_a_run_folder_replaces_no_link_or_special_file(tmp_path):
    victim, out = _victim(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "a.txt").symlink_to(victim)

    def write(folder):
        (folder / "a.txt").write_text("new")
        return ["a.txt"]

    with pytest.raises(OSError, match=r"a\.txt: is a symbolic link"):
        write_together(out, write)
    assert (out / "a.txt").is_symlink() and victim.read_text() == "precious\n"
    (out / "a.txt").unlink()
    os.mkfifo(out / "a.txt")
    with pytest.raises(OSError, match=r"a\.txt: is a FIFO"):
        write_together(out, write)
    assert stat.S_ISFIFO(os.lstat(out / "a.txt").st_mode)


def test_run_command_reports_a_refused_write_in_one_line(tmp_path, capsys):
    link = tmp_path / "metrics.json"
    link.symlink_to(_victim(tmp_path))
    parser = argparse.ArgumentParser(prog="minicnn train")
    assert cli.run_command(parser, argparse.Namespace(), lambda args, p: write_json_atomic(link, {})) == 1
    assert f"{link}: is a symbolic link" in _one_error_line(capsys, "minicnn train")


# --- item 7: --out that leads nowhere ---------------------------------------------------------

def test_out_as_a_loop_of_links_is_one_line(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("L", "L")
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(weights), "--out", "L"])
    assert info.value.code == 2
    assert "argument --out: L: symbolic links in a loop" in _one_error_line(capsys, "minicnn evaluate")


def test_out_as_a_dangling_link_is_one_line(weights, tmp_path, capsys):
    (tmp_path / "dang").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(weights), "--out", str(tmp_path / "dang")])
    assert info.value.code == 2
    line = _one_error_line(capsys, "minicnn evaluate")
    assert f"is a symbolic link to {tmp_path / 'nowhere'}, which does not exist" in line, line


# --- item 19: empty paths ---------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["train", "--out", ""], ["train", "--resume", ""], ["train", "--data-dir", ""],
                                  ["evaluate", "W", "--out", ""], ["evaluate", "W", "--data-dir", ""],
                                  ["evaluate", ""], ["bench", "--json", ""], ["predict", "W", "x.png",
                                                                              "--save-input", ""]])
def test_an_empty_path_is_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "an empty path ('')" in _one_error_line(capsys, f"minicnn {argv[0]}")


# --- item 18: permission denied ---------------------------------------------------------------

def test_a_weights_file_that_may_not_be_read_says_permission_denied(weights, monkeypatch):
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.fspath(file) == str(weights):
            raise PermissionError(13, "Permission denied", str(weights))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    for load in (lambda: minicnn.load(models.MnistCNN(seed=0), weights), lambda: stored_names(weights)):
        with pytest.raises(CheckpointError, match=r"model\.npz: permission denied: this user may not read the file"):
            load()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway (the monkeypatched test "
                                                  "above covers this user's case)")
def test_a_chmod_000_weights_file_says_permission_denied(tmp_path):
    path = minicnn.save(models.MnistCNN(seed=0), tmp_path / "model.npz")
    path.chmod(0)
    with pytest.raises(CheckpointError, match="model\\.npz: permission denied: this user may not read the file"):
        minicnn.load(models.MnistCNN(seed=0), path)


# --- item 14: a gzip bomb as an IDX file ------------------------------------------------------

def test_an_idx_bomb_stops_at_the_first_byte_too_many(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10))  # the 10 labels the header promises
        for _ in range(64):  # then 64 MiB more, which compresses to about 64 kB
            f.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"too long: .* 10 data bytes after the 8-byte header, found 11 or more"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"inflated {peak:,} bytes"


# --- item 24 ------------------------------------------------------------------------------------

def test_an_integer_key_is_named(tmp_path):
    model = minicnn.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"unexpected keys: 0\. Expected keys: weight, bias"):
        model.load_state_dict({0: np.zeros(2), **model.state_dict()})


def test_a_device_as_weights_is_named_for_what_it_is():
    with pytest.raises(CheckpointError, match=r"^/dev/null is a character device, not a weights file"):
        minicnn.load(models.MnistCNN(seed=0), "/dev/null")
