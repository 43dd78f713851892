"""What a run removes from its --out folder: only what an interrupted minicnn run left there.

minicnn/run_folder.py: holding the folder's lock, a run removes its own staging folders
(``.writing-`` + tempfile's 8 random characters, made by write_together) and the temporary
files of an atomic write (``.NAME.XXXXXXXX.tmp``, made by serialization.write_atomic); a
user's own dot-files and dot-folders (``.git/``, ``.notes.tmp``, ...) are theirs, and stay,
through ``minicnn train --out DIR`` and ``minicnn evaluate W --out DIR`` alike.
"""
import os
import tempfile

import pytest

import minicnn
from minicnn import cli, models, run_folder
from minicnn.run_folder import claim
from strategies import tiny_mnist



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """An MNIST-layout folder of 20 training and 20 test images (noise): train then evaluates 20 images, not
    the 10,000 of the bundled test set, and so takes well under a second."""
    return tiny_mnist(tmp_path_factory.mktemp("tiny-mnist"))


def _users_own(folder):
    """A user's dot-files and dot-folders, some with names close to minicnn's own; {relative path: bytes}."""
    files = {
        ".git/HEAD": b"ref: refs/heads/main\n",
        ".git/objects/ab/cdef": b"an object",
        ".notes.tmp": b"my notes",                    # a .tmp, but not NAME.XXXXXXXX.tmp
        ".cache/model.npz.12345678": b"a cache",      # 8 characters, but no .tmp, and in a folder
        ".writing-mine": b"a file",                   # the staging prefix, on a file: staging is a folder
        ".minicnn": b"a user's file",
        ".env": b"KEY=value\n",
        ".hidden.tmp.txt": b"not a temporary file",
        ".draft.v2.tmp": b"a user's .tmp",            # NAME.XX.tmp: not the 8 random characters of mkstemp
        ".model.npz.123456789.tmp": b"nine",          # 9 characters
        ".model.npz.1234567.tmp": b"seven",           # 7
        ".notes.abcdefgh.tmp": b"my notes",           # NAME.XXXXXXXX.tmp, but not of a file minicnn writes here
        ".model.npz.abcdefgh.tmp": b"mine",           # nor this: model.npz is written in a staging folder
        ".writing-abcdefgh/chapter1.md": b"a draft",  # a staging folder's name, without minicnn's mark
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / ".empty-folder").mkdir()
    return files


def _leftovers(folder):
    """What an interrupted run leaves: a staging folder (with a half-written file) and an atomic write's
    temporary file, named as tempfile names them; returns their names, sorted."""
    staging = tempfile.mkdtemp(prefix=run_folder.STAGING_PREFIX, dir=folder)
    (folder / staging / run_folder.STAGING_MARK).touch()
    (folder / staging / "model.npz").write_bytes(b"half a file")
    (folder / staging / ".old").mkdir()
    unmarked = tempfile.mkdtemp(prefix=run_folder.STAGING_PREFIX, dir=folder)   # killed as it was made
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.npz.", suffix=".tmp", dir=folder)
    os.write(fd, b"half a file")
    os.close(fd)
    return sorted([os.path.basename(staging), os.path.basename(unmarked), os.path.basename(tmp)])


def _contents(folder, names):
    """{name: its bytes, or None where it is gone}"""
    return {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in names}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return minicnn.save(models.MnistCNN(seed=0), tmp_path_factory.mktemp("weights") / "model.npz")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_run_removes_its_own_leftovers_and_nothing_of_the_users(command, weights, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = _users_own(out)
    left = _leftovers(out)
    argv = ["train", "--epochs", "0", "--quiet"] if command == "train" else ["evaluate", str(weights)]
    argv += ["--data-dir", str(data_dir), "--out", str(out)]  # train --epochs 0: no step, the reports only
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert _contents(out, mine) == mine, "the user's files, as they were"
    assert (out / ".empty-folder").is_dir()
    for name in left:
        assert not os.path.lexists(out / name), f"{name}: an interrupted run's leftover, not removed"
    dot_entries = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert dot_entries == sorted({".cache", ".empty-folder", ".env", ".git", ".hidden.tmp.txt", ".minicnn",
                                  run_folder.LOCK_NAME, ".notes.tmp", ".writing-mine", ".draft.v2.tmp",
                                  ".model.npz.123456789.tmp", ".model.npz.1234567.tmp", ".notes.abcdefgh.tmp",
                                  ".model.npz.abcdefgh.tmp", ".writing-abcdefgh"})
    assert f"Removed what an interrupted run left in {out}: {', '.join(left)}\n" in printed  # exactly those


def test_the_claim_names_exactly_what_it_removed(tmp_path):
    mine = _users_own(tmp_path)
    left = _leftovers(tmp_path)
    with claim(tmp_path, "minicnn train") as removed:
        assert removed == left
    assert _contents(tmp_path, mine) == mine


def test_a_symbolic_link_named_like_a_staging_folder_is_not_followed(tmp_path):
    """A link is not a folder this run made: neither it nor what it points to is removed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".writing-a1b2c3d4").symlink_to(elsewhere, target_is_directory=True)
    (out / ".model.npz.a1b2c3d4.tmp").symlink_to(elsewhere / "precious.txt")
    with claim(out, "minicnn train") as removed:
        assert removed == []
    assert (out / ".writing-a1b2c3d4").is_symlink() and (out / ".model.npz.a1b2c3d4.tmp").is_symlink()
    assert (elsewhere / "precious.txt").read_text() == "keep"


def test_a_users_folder_that_merely_starts_like_a_staging_folder_stays(tmp_path):
    (tmp_path / ".writing-drafts").mkdir()
    (tmp_path / ".writing-drafts" / "chapter1.md").write_text("my draft")
    with claim(tmp_path, "minicnn train"):
        pass
    assert (tmp_path / ".writing-drafts" / "chapter1.md").read_text() == "my draft"


def test_a_staging_folder_is_minicnns_only_with_its_mark(tmp_path):
    """The mark must be a file: a link named like it (to a file elsewhere) proves nothing."""
    (tmp_path / "elsewhere.txt").write_text("keep")
    linked = tmp_path / "out" / ".writing-a1b2c3d4"
    linked.mkdir(parents=True)
    (linked / run_folder.STAGING_MARK).symlink_to(tmp_path / "elsewhere.txt")
    (linked / "draft.md").write_text("a draft")
    with claim(tmp_path / "out", "minicnn train") as removed:
        assert removed == []
    assert (linked / "draft.md").read_text() == "a draft"


def test_write_together_marks_its_staging_folder(tmp_path):
    seen = []

    def write(folder):
        seen.append(sorted(p.name for p in folder.iterdir()))
        (folder / "a.txt").write_text("a")
        return ["a.txt"]

    assert run_folder.write_together(tmp_path, write) == ["a.txt"]
    assert seen == [[run_folder.STAGING_MARK]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
