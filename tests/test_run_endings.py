"""How `minicnn train --out DIR` ends when it is stopped after its last epoch, or when a checkpoint cannot be
written: DIR holds one run's files (all of them, or its last complete epoch's weights, history and
checkpoint), and the one-line message says which and how to go on.

Each run trains a tiny data set (20 images of noise, one batch an epoch) for two epochs: well under a
second.  "An older run's files" are those of a run with another seed in the same folder.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import shutil

import numpy as np
import pytest

import minicnn
from minicnn import cli, models, recipes, serialization
from strategies import tiny_mnist

TRAIN = ["train", "--epochs", "2", "--no-augment", "--quiet"]
LATEST = [".minicnn.lock", "checkpoint.npz", "history.json", "model.npz"]   # a stopped run's files


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_mnist(tmp_path_factory.mktemp("data") / "mnist")


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("complete") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main([*TRAIN, "--seed", "1", "--data-dir", str(data_dir), "--out", str(run)]) == 0
    return run


@pytest.fixture
def older_run(tmp_path, complete_run):
    """A folder holding a complete earlier run (seed 1): weights, history, metrics, reports, checkpoint."""
    return shutil.copytree(complete_run, tmp_path / "run")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def _weights(path):
    return minicnn.load(models.MnistCNN(seed=0), path).state_dict()


def _is_this_runs_epoch_2(run):
    """DIR holds this run's (seed 0) epoch-2 checkpoint, with its weights and history beside it, and nothing of
    the older run's."""
    assert sorted(p.name for p in run.iterdir()) == LATEST
    assert json.loads((run / "history.json").read_text())["epoch"] == [1, 2]
    np.testing.assert_equal(_weights(run / "model.npz"), _weights(run / "checkpoint.npz"))
    setup = minicnn.serialization.read_checkpoint_extra(run / "checkpoint.npz")["setup"]
    assert setup["seed"] == 0


def _interrupt_once(monkeypatch, module, name):
    """The next call of ``module.name`` is interrupted by Ctrl-C; the calls after it run as ever."""
    function = getattr(module, name)

    def interrupted(*args, **kwargs):
        monkeypatch.setattr(module, name, function)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, interrupted)


@pytest.mark.parametrize("where", ["the test evaluation", "the reports", "the final move"])
def test_ctrl_c_after_the_last_epoch_leaves_one_runs_files_and_says_how_to_resume(where, older_run, data_dir,
                                                                                   monkeypatch, capsys):
    target = {"the test evaluation": (recipes, "evaluate"), "the reports": (recipes, "save_reports"),
              "the final move": (minicnn.run_folder, "_replace")}[where]
    _interrupt_once(monkeypatch, *target)
    assert cli.main([*TRAIN, "--seed", "0", "--data-dir", str(data_dir), "--out", str(older_run)]) == 130
    assert _error_line(capsys) == (
        f"minicnn train: interrupted after training, before its files were written; {older_run} holds the weights "
        f"and checkpoint of epoch 2: continue with minicnn train --resume {older_run} --data-dir {data_dir}")
    _is_this_runs_epoch_2(older_run)
    # Resuming trains no more epochs: it evaluates the checkpoint's weights and writes the run's files.
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(older_run), "--data-dir", str(data_dir), "--quiet"]) == 0
    assert "Epoch [" not in capsys.readouterr().out
    metrics = json.loads((older_run / "metrics.json").read_text())
    assert (metrics["seed"], metrics["epochs"]) == (0, 2)
    np.testing.assert_equal(_weights(older_run / "model.npz"), _weights(older_run / "checkpoint.npz"))


def test_ctrl_c_once_the_files_are_in_place_keeps_them_all(older_run, data_dir, monkeypatch, capsys):
    write_together = recipes.write_together

    def written_then_interrupted(*args, **kwargs):
        write_together(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(recipes, "write_together", written_then_interrupted)
    assert cli.main([*TRAIN, "--seed", "0", "--data-dir", str(data_dir), "--out", str(older_run)]) == 130
    assert _error_line(capsys) == f"minicnn train: interrupted as it ended; {older_run} holds all of this run's files"
    assert json.loads((older_run / "metrics.json").read_text())["seed"] == 0
    assert (older_run / "confusion_matrix.png").is_file() and (older_run / "curves.png").is_file()


def _disk_full_at(monkeypatch, epoch, also=None):
    """The checkpoint of ``epoch`` (and any later) fails as on a full disk; ``also``: (module, name) of a
    function that fails so too from then on."""
    save_checkpoint, calls = serialization.save_checkpoint, []

    def full(path, *args, **kwargs):
        calls.append(1)
        if len(calls) >= epoch:
            if also:
                monkeypatch.setattr(*also, lambda *a, **k: (_ for _ in ()).throw(
                    OSError(errno.ENOSPC, "No space left on device")))
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return save_checkpoint(path, *args, **kwargs)

    monkeypatch.setattr(serialization, "save_checkpoint", full)


def test_a_full_disk_at_a_later_checkpoint_keeps_the_last_complete_one_with_its_weights(older_run, data_dir,
                                                                                         monkeypatch, capsys):
    _disk_full_at(monkeypatch, epoch=2)
    assert cli.main([*TRAIN, "--seed", "0", "--data-dir", str(data_dir), "--out", str(older_run)]) == 1
    assert _error_line(capsys) == (
        f"minicnn train: error: {older_run / 'checkpoint.npz'}: No space left on device; {older_run} holds the "
        f"weights and checkpoint of epoch 1, the last complete one: free some space and continue with "
        f"minicnn train --resume {older_run} --data-dir {data_dir}")
    assert sorted(p.name for p in older_run.iterdir()) == LATEST
    assert json.loads((older_run / "history.json").read_text())["epoch"] == [1]
    np.testing.assert_equal(_weights(older_run / "model.npz"), _weights(older_run / "checkpoint.npz"))
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(older_run), "--data-dir", str(data_dir), "--quiet"]) == 0
    assert "Epoch [2/2]" in capsys.readouterr().out


def test_when_even_the_weights_cannot_be_written_the_checkpoint_alone_is_named(older_run, data_dir, monkeypatch,
                                                                              capsys):
    before = {p.name: p.read_bytes() for p in older_run.iterdir() if p.name != "checkpoint.npz"}
    _disk_full_at(monkeypatch, epoch=2, also=(minicnn, "save"))
    assert cli.main([*TRAIN, "--seed", "0", "--data-dir", str(data_dir), "--out", str(older_run)]) == 1
    assert _error_line(capsys) == (
        f"minicnn train: error: {older_run / 'checkpoint.npz'}: No space left on device; {older_run} holds the "
        f"checkpoint of epoch 1, the last complete one (its weights could not be put beside it: No space left on "
        f"device): free some space and continue with minicnn train --resume {older_run} --data-dir {data_dir}")
    # The older run's files stay together, as they were; the checkpoint is this run's epoch 1.
    assert {p.name: p.read_bytes() for p in older_run.iterdir() if p.name != "checkpoint.npz"} == before
    assert minicnn.serialization.read_checkpoint_extra(older_run / "checkpoint.npz")["epoch"] == 1


def test_a_full_disk_at_the_first_checkpoint_leaves_the_folder_as_it_was(older_run, data_dir, monkeypatch, capsys):
    before = {p.name: p.read_bytes() for p in older_run.iterdir()}
    _disk_full_at(monkeypatch, epoch=1)
    assert cli.main([*TRAIN, "--seed", "0", "--data-dir", str(data_dir), "--out", str(older_run)]) == 1
    assert _error_line(capsys) == (
        f"minicnn train: error: {older_run / 'checkpoint.npz'}: No space left on device; no epoch was complete, "
        f"so {older_run} is as it was")
    assert {p.name: p.read_bytes() for p in older_run.iterdir()} == before


@pytest.mark.parametrize("empty, file", [("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")])
def test_a_data_set_without_training_or_test_images_is_refused_before_training(empty, file, tmp_path, monkeypatch,
                                                                               capsys):
    folder = tiny_mnist(tmp_path / "data", train=0 if empty == "train" else 20, test=0 if empty == "test" else 20)
    monkeypatch.setattr(recipes, "fit", lambda *args, **kwargs: pytest.fail("training must not start"))
    assert cli.main([*TRAIN, "--data-dir", str(folder), "--out", str(tmp_path / "run")]) == 1
    assert _error_line(capsys) == (f"minicnn train: error: {folder / file} holds 0 images: minicnn train needs at "
                                   f"least one training image and one test image")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".minicnn.lock"]
